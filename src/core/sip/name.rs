//! Names: SIP header field names (canonical spelling, compact forms, case-insensitive
//! lookup) and request methods. Owns no values.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! header_names {
    ($( $v:ident => $canon:literal $(, $compact:literal)? ; )*) => {
        /// A header field name. Known names are variants (compact forms map onto them);
        /// anything else is kept as received in `Other`.
        #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum HeaderName {
            $( $v, )*
            Other(String),
        }

        const KNOWN: &[(HeaderName, &str, Option<u8>)] = &[
            $( (HeaderName::$v, $canon, header_names!(@c $($compact)?)), )*
        ];

        impl HeaderName {
            /// Canonical spelling (compact forms are printed in full).
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$v => $canon, )*
                    HeaderName::Other(s) => s,
                }
            }
        }
    };
    (@c $c:literal) => { Some($c) };
    (@c) => { None };
}

header_names! {
    Accept => "Accept";
    AcceptContact => "Accept-Contact", b'a';
    AcceptEncoding => "Accept-Encoding";
    AcceptLanguage => "Accept-Language";
    AlertInfo => "Alert-Info";
    Allow => "Allow";
    AllowEvents => "Allow-Events", b'u';
    Authorization => "Authorization";
    CallId => "Call-ID", b'i';
    CallInfo => "Call-Info";
    Contact => "Contact", b'm';
    ContentDisposition => "Content-Disposition";
    ContentEncoding => "Content-Encoding", b'e';
    ContentLanguage => "Content-Language";
    ContentLength => "Content-Length", b'l';
    ContentType => "Content-Type", b'c';
    CSeq => "CSeq";
    Date => "Date";
    ErrorInfo => "Error-Info";
    Event => "Event", b'o';
    Expires => "Expires";
    From => "From", b'f';
    Identity => "Identity", b'y';
    InReplyTo => "In-Reply-To";
    MaxForwards => "Max-Forwards";
    MimeVersion => "MIME-Version";
    MinExpires => "Min-Expires";
    MinSe => "Min-SE";
    Organization => "Organization";
    Path => "Path";
    Priority => "Priority";
    ProxyAuthenticate => "Proxy-Authenticate";
    ProxyAuthorization => "Proxy-Authorization";
    ProxyRequire => "Proxy-Require";
    RAck => "RAck";
    Reason => "Reason";
    RecordRoute => "Record-Route";
    ReferTo => "Refer-To", b'r';
    ReferredBy => "Referred-By", b'b';
    RejectContact => "Reject-Contact", b'j';
    Replaces => "Replaces";
    ReplyTo => "Reply-To";
    RequestDisposition => "Request-Disposition", b'd';
    Require => "Require";
    RetryAfter => "Retry-After";
    Route => "Route";
    RSeq => "RSeq";
    Server => "Server";
    SessionExpires => "Session-Expires", b'x';
    Subject => "Subject", b's';
    SubscriptionState => "Subscription-State";
    Supported => "Supported", b'k';
    Timestamp => "Timestamp";
    To => "To", b't';
    Unsupported => "Unsupported";
    UserAgent => "User-Agent";
    Via => "Via", b'v';
    Warning => "Warning";
    WwwAuthenticate => "WWW-Authenticate";
}

/// Indices into `KNOWN` by the length of the canonical name: a lookup compares a
/// name with the few known ones of its length only.
fn by_length() -> &'static [Vec<u8>] {
    static TABLE: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let longest = KNOWN.iter().map(|(_, s, _)| s.len()).max().unwrap_or(0);
        let mut t = vec![Vec::new(); longest + 1];
        for (i, (_, s, _)) in KNOWN.iter().enumerate() {
            t[s.len()].push(i as u8);
        }
        t
    })
}

impl HeaderName {
    /// Looks a name up case-insensitively, compact forms included.
    pub fn parse(name: &str) -> HeaderName {
        let b = name.as_bytes();
        if b.len() == 1 {
            let c = b[0].to_ascii_lowercase();
            if let Some((h, _, _)) = KNOWN.iter().find(|(_, _, k)| *k == Some(c)) {
                return h.clone();
            }
        } else if let Some(candidates) = by_length().get(b.len()) {
            if let Some(&i) = candidates.iter().find(|&&i| KNOWN[usize::from(i)].1.eq_ignore_ascii_case(name)) {
                return KNOWN[usize::from(i)].0.clone();
            }
        }
        HeaderName::Other(name.to_string())
    }

    /// Headers whose value is a comma-separated list (RFC 3261 §7.3.1) that may be
    /// split or combined.
    pub fn is_list(&self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            Accept
                | AcceptEncoding
                | AcceptLanguage
                | AlertInfo
                | Allow
                | AllowEvents
                | CallInfo
                | Contact
                | ContentEncoding
                | ContentLanguage
                | ErrorInfo
                | InReplyTo
                | Path
                | ProxyRequire
                | Reason
                | RecordRoute
                | Require
                | Route
                | Supported
                | Unsupported
                | Via
                | Warning
        )
    }

    /// Headers that may appear at most once (RFC 3261 §20).
    pub fn is_singleton(&self) -> bool {
        use HeaderName::*;
        matches!(self, CallId | CSeq | From | To | MaxForwards | ContentLength | ContentType | Expires | MinExpires)
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request method. Methods are case-sensitive (RFC 3261 §7.1); unknown ones are kept.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Other(String),
}

impl Method {
    /// Parses a method token; `None` if it is not a token.
    pub fn parse(s: &str) -> Option<Method> {
        if s.is_empty() || !s.bytes().all(super::text::is_token) {
            return None;
        }
        Some(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn header_names_match_case_insensitively_and_in_compact_form() {
        assert_eq!(HeaderName::parse("v"), HeaderName::Via);
        assert_eq!(HeaderName::parse("V"), HeaderName::Via);
        assert_eq!(HeaderName::parse("MaX-fOrWaRdS"), HeaderName::MaxForwards);
        assert_eq!(HeaderName::parse("i"), HeaderName::CallId);
        assert_eq!(HeaderName::parse("C%6Fntact"), HeaderName::Other("C%6Fntact".into()));
        assert_eq!(HeaderName::parse("q"), HeaderName::Other("q".into()));
        assert_eq!(HeaderName::CallId.as_str(), "Call-ID");
        assert_eq!(HeaderName::parse(""), HeaderName::Other(String::new()));
        assert_eq!(HeaderName::parse("X-A-Header-Longer-Than-Any-Known-One"), HeaderName::Other("X-A-Header-Longer-Than-Any-Known-One".into()));
    }
    #[test]
    fn every_known_name_is_found_in_any_case_and_a_same_length_other_is_not() {
        for (h, canon, _) in KNOWN {
            assert_eq!(&HeaderName::parse(canon), h);
            assert_eq!(&HeaderName::parse(&canon.to_ascii_lowercase()), h);
            assert_eq!(&HeaderName::parse(&canon.to_ascii_uppercase()), h);
            let other = format!("{}#", &canon[..canon.len() - 1]);
            assert_eq!(HeaderName::parse(&other), HeaderName::Other(other.clone()));
        }
    }
    #[test]
    fn methods_match_case_sensitively_unknown_tokens_are_other_and_non_tokens_refused() {
        assert_eq!(Method::parse("INVITE"), Some(Method::Invite));
        assert_eq!(Method::parse("invite"), Some(Method::Other("invite".into())));
        assert_eq!(Method::parse("A B"), None);
    }
}
