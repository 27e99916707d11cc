/* A caller-ID judge built on spandsp (a decoder the project did not write): reads
 * 16-bit little-endian 8 kHz audio from the file named by argv[2] and prints every
 * message spandsp's ADSI receiver accepts (its checksum checked by spandsp), one
 * "msg TYPE" line and then one "field TYPE TEXT" line per field, then "end".
 * argv[1] is the standard: class (Bell 202), clip (ETSI V.23) or dtmf (DTMF CLIP).
 * Built by tests/callerid_judge.rs with `cc ... $(pkg-config --cflags --libs spandsp)`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <spandsp.h>

static adsi_rx_state_t *rx;

static void put_msg(void *user, const uint8_t *msg, int len)
{
    uint8_t type;
    const uint8_t *body;
    int flen;
    int pos = -1;
    (void) user;
    while ((pos = adsi_next_field(rx, msg, len, pos, &type, &body, &flen)) > 0) {
        if (body == NULL) {
            printf("msg %02x\n", type);
            continue;
        }
        printf("field %02x ", type);
        for (int i = 0; i < flen; i++)
            putchar(body[i] >= 0x20 && body[i] < 0x7f ? body[i] : '?');
        putchar('\n');
    }
    printf("end\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int std;
    if (argc != 3)
        return 2;
    if (strcmp(argv[1], "class") == 0)
        std = ADSI_STANDARD_CLASS;
    else if (strcmp(argv[1], "clip") == 0)
        std = ADSI_STANDARD_CLIP;
    else if (strcmp(argv[1], "dtmf") == 0)
        std = ADSI_STANDARD_CLIP_DTMF;
    else
        return 2;
    FILE *f = fopen(argv[2], "rb");
    if (f == NULL)
        return 3;
    rx = adsi_rx_init(NULL, std, put_msg, NULL);
    int16_t buf[160];
    size_t n;
    while ((n = fread(buf, sizeof(int16_t), 160, f)) > 0)
        adsi_rx(rx, buf, (int) n);
    fclose(f);
    return 0;
}
