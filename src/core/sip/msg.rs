//! The owned, serde-serialisable SIP message: start line, the raw header list as
//! received (unfolded), the body, and typed accessors that parse header values on
//! demand. Owns no parsing of the byte stream (parse.rs) or printing (print.rs).

use super::error::ParseError;
use super::headers::{AuthParams, CSeq, Contact, MediaType, NameAddr, Reason, Via};
use super::name::{HeaderName, Method};
use super::text;
use super::uri::Uri;
use serde::{Deserialize, Serialize};

/// A header value: short ones (most of them: CSeq, Max-Forwards, Content-Length,
/// Content-Type, many a Call-ID) live inline, with no allocation of their own; on the
/// wire (postcard, serde) it is a string.
pub type Value = compact_str::CompactString;

/// One header line: its name and its unfolded, trimmed value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: HeaderName,
    pub value: Value,
}

/// The header list, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Headers(pub Vec<Header>);

impl Headers {
    /// First value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.0.iter().find(|h| &h.name == name).map(|h| h.value.as_str())
    }
    /// Every line of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |h| &h.name == name).map(|h| h.value.as_str())
    }
    pub fn count(&self, name: &HeaderName) -> usize {
        self.0.iter().filter(|h| &h.name == name).count()
    }
    pub fn push(&mut self, name: HeaderName, value: impl Into<Value>) {
        self.0.push(Header { name, value: value.into() });
    }
    /// Adds a line just before Content-Length (or at the end): where a header added to
    /// a message being built belongs, with the body's framing last.
    pub fn add(&mut self, name: HeaderName, value: impl Into<Value>) {
        let at = self.0.iter().position(|h| h.name == HeaderName::ContentLength).unwrap_or(self.0.len());
        self.0.insert(at, Header { name, value: value.into() });
    }
    /// Removes every line of `name`.
    pub fn remove(&mut self, name: &HeaderName) {
        self.0.retain(|h| &h.name != name);
    }
    /// Replaces every line of `name` with one line (appended if absent).
    pub fn set(&mut self, name: HeaderName, value: impl Into<Value>) {
        let value = value.into();
        match self.0.iter().position(|h| h.name == name) {
            Some(i) => {
                self.0[i].value = value;
                let mut n = 0;
                self.0.retain(|h| {
                    h.name != name || {
                        n += 1;
                        n == 1
                    }
                });
            }
            None => self.push(name, value),
        }
    }
    /// The comma-separated elements of every line of `name` (list headers).
    pub fn list<'a>(&'a self, name: &HeaderName) -> Result<Vec<&'a str>, ParseError> {
        let mut out = Vec::new();
        for v in self.0.iter().filter(|h| &h.name == name).map(|h| h.value.as_str()) {
            text::each_comma(v, |p| {
                if !p.is_empty() {
                    out.push(p)
                }
            })
            .map_err(|_| ParseError::BadHeader(name.clone()))?;
        }
        Ok(out)
    }
    /// The first element `list` would give, without collecting the others (every
    /// line is still checked, so the `Err` is the same as `list`'s).
    pub fn first_of_list<'a>(&'a self, name: &HeaderName) -> Result<Option<&'a str>, ParseError> {
        let mut first = None;
        for v in self.0.iter().filter(|h| &h.name == name).map(|h| h.value.as_str()) {
            text::each_comma(v, |p| {
                if first.is_none() && !p.is_empty() {
                    first = Some(p)
                }
            })
            .map_err(|_| ParseError::BadHeader(name.clone()))?;
        }
        Ok(first)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// A response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// A SIP message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Message {
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }
    pub fn body(&self) -> &[u8] {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }
}

/// Typed accessors shared by requests and responses. Values were validated by the
/// parser for the headers it checks (see parse.rs), so `Err` here means a message
/// built or edited by hand, or a header the parser does not check.
pub trait SipHeaders {
    fn headers(&self) -> &Headers;

    fn one(&self, name: HeaderName) -> Result<&str, ParseError> {
        self.headers().get(&name).ok_or(ParseError::BadHeader(name))
    }
    /// Every Via entry, top first.
    fn via(&self) -> Result<Vec<Via>, ParseError> {
        let h = self.headers();
        h.list(&HeaderName::Via)?
            .into_iter()
            .map(|v| Via::parse(v).ok_or(ParseError::BadHeader(HeaderName::Via)))
            .collect()
    }
    fn top_via(&self) -> Result<Via, ParseError> {
        let h = self.headers();
        let first = h.first_of_list(&HeaderName::Via)?.ok_or(ParseError::BadHeader(HeaderName::Via))?;
        Via::parse(first).ok_or(ParseError::BadHeader(HeaderName::Via))
    }
    fn from(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(self.one(HeaderName::From)?).ok_or(ParseError::BadHeader(HeaderName::From))
    }
    fn to(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(self.one(HeaderName::To)?).ok_or(ParseError::BadHeader(HeaderName::To))
    }
    /// The top Via's branch, read in place (`top_via()?.branch()` without building the
    /// entry).
    fn top_branch(&self) -> Option<&str> {
        let top = self.headers().first_of_list(&HeaderName::Via).ok()??;
        Via::branch_and_sent_by(top)?.0
    }
    /// The From tag, read in place (`from()?.tag()` without building the address).
    fn tag_of_from(&self) -> Option<&str> {
        self.headers().get(&HeaderName::From).and_then(NameAddr::tag_in)
    }
    /// The To tag, read in place.
    fn tag_of_to(&self) -> Option<&str> {
        self.headers().get(&HeaderName::To).and_then(NameAddr::tag_in)
    }
    fn call_id(&self) -> Result<&str, ParseError> {
        self.one(HeaderName::CallId)
    }
    fn cseq(&self) -> Result<CSeq, ParseError> {
        CSeq::parse(self.one(HeaderName::CSeq)?).ok_or(ParseError::BadHeader(HeaderName::CSeq))
    }
    /// `None` when absent.
    fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        match self.headers().get(&HeaderName::MaxForwards) {
            None => Ok(None),
            Some(v) => {
                text::parse_u64(v, 255).map(|n| Some(n as u8)).ok_or(ParseError::BadHeader(HeaderName::MaxForwards))
            }
        }
    }
    fn content_length(&self) -> Result<Option<usize>, ParseError> {
        match self.headers().get(&HeaderName::ContentLength) {
            None => Ok(None),
            Some(v) => text::parse_u64(v, crate::limits::SIP_MAX_CONTENT_LENGTH as u64)
                .map(|n| Some(n as usize))
                .ok_or(ParseError::BadContentLength),
        }
    }
    fn content_type(&self) -> Result<Option<MediaType>, ParseError> {
        self.headers()
            .get(&HeaderName::ContentType)
            .map(|v| MediaType::parse(v).ok_or(ParseError::BadHeader(HeaderName::ContentType)))
            .transpose()
    }
    /// Contact: `*` or the addresses of every Contact line.
    fn contact(&self) -> Result<Option<Contact>, ParseError> {
        let h = self.headers();
        let items = h.list(&HeaderName::Contact)?;
        if items.is_empty() {
            return Ok(None);
        }
        if items.len() == 1 && items[0] == "*" {
            return Ok(Some(Contact::Star));
        }
        items
            .into_iter()
            .map(|v| NameAddr::parse(v).ok_or(ParseError::BadHeader(HeaderName::Contact)))
            .collect::<Result<Vec<_>, _>>()
            .map(|v| Some(Contact::Addrs(v)))
    }
    /// Route or Record-Route entries, in order.
    fn routes(&self, name: HeaderName) -> Result<Vec<NameAddr>, ParseError> {
        let h = self.headers();
        h.list(&name)?.into_iter().map(|v| NameAddr::parse(v).ok_or(ParseError::BadHeader(name.clone()))).collect()
    }
    /// Expires header (delta-seconds, saturating).
    fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.headers()
            .get(&HeaderName::Expires)
            .map(|v| super::headers::delta_seconds(v).ok_or(ParseError::BadHeader(HeaderName::Expires)))
            .transpose()
    }
    /// Option tags or methods of a list header (Allow, Supported, Require, ...).
    fn tokens(&self, name: HeaderName) -> Result<Vec<String>, ParseError> {
        let h = self.headers();
        h.list(&name)?
            .into_iter()
            .map(|t| if text::is_token_str(t) { Ok(t.to_string()) } else { Err(ParseError::BadHeader(name.clone())) })
            .collect()
    }
    /// Every challenge or credentials line of `name` (WWW-Authenticate, Authorization, ...).
    fn auth(&self, name: HeaderName) -> Result<Vec<AuthParams<'_>>, ParseError> {
        let h = self.headers();
        h.0.iter().filter(|l| l.name == name).map(|l| AuthParams::parse(&l.value).ok_or(ParseError::BadHeader(name.clone()))).collect()
    }
    fn reasons(&self) -> Result<Vec<Reason>, ParseError> {
        let h = self.headers();
        h.list(&HeaderName::Reason)?
            .into_iter()
            .map(|v| Reason::parse(v).ok_or(ParseError::BadHeader(HeaderName::Reason)))
            .collect()
    }
}

impl SipHeaders for Request {
    fn headers(&self) -> &Headers {
        &self.headers
    }
}
impl SipHeaders for Response {
    fn headers(&self) -> &Headers {
        &self.headers
    }
}
impl SipHeaders for Message {
    fn headers(&self) -> &Headers {
        Message::headers(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::sip::parse_message;

    #[test]
    fn messages_survive_postcard_for_replication() {
        let raw =
            b"REGISTER sip:[2001:db8::1]:5070;transport=tcp SIP/2.0\r\nv: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKx\r\n\
f: <sip:a@b>;tag=1\r\nt: <sip:a@b>\r\ni: x@y\r\nCSeq: 2 REGISTER\r\nm: *\r\nX-Odd: v\r\nl: 3\r\n\r\nabc";
        let m = parse_message(raw).unwrap();
        let bytes = postcard::to_allocvec(&m).unwrap();
        let back: Message = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.contact().unwrap(), Some(crate::core::sip::Contact::Star));
        assert_eq!(back.body(), b"abc");
    }

    #[test]
    fn headers_split_comma_lists_set_replaces_every_value_and_remove_deletes() {
        let mut h = Headers::default();
        h.push(HeaderName::Via, "a");
        h.push(HeaderName::Via, "b, c");
        h.push(HeaderName::Allow, "INVITE");
        assert_eq!(h.list(&HeaderName::Via).unwrap(), vec!["a", "b", "c"]);
        h.set(HeaderName::Via, "z");
        assert_eq!(h.get_all(&HeaderName::Via).collect::<Vec<_>>(), vec!["z"]);
        h.remove(&HeaderName::Allow);
        assert_eq!(h.len(), 1);
    }
}
