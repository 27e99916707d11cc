//! STUB — replaced by the board model. A board says which GPIO lines and ALSA PCMs
//! make up each analog port, and whether the hardware is real or simulated.

#[derive(Debug, Clone)]
pub struct Board {
    pub name: String,
    pub simulated: bool,
}

impl Board {
    pub fn by_name(name: &str) -> Option<Board> {
        match name {
            "sim" => Some(Board { name: "sim".into(), simulated: true }),
            "rpi4" | "rpi5" => Some(Board { name: name.into(), simulated: false }),
            _ => None,
        }
    }
}
