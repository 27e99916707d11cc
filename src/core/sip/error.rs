//! Parse errors of the SIP message layer: a small enum whose Display is usable as the
//! reason phrase of the 400 (or 505) answer. Owns no parsing itself.

use super::name::HeaderName;
use std::fmt;

/// Why a SIP message could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing but whitespace.
    Empty,
    /// Larger than `limits::SIP_MAX_MESSAGE`.
    MessageTooLarge,
    /// More header fields than `limits::SIP_MAX_HEADERS`.
    TooManyHeaders,
    /// A start or header line longer than `limits::SIP_MAX_LINE`.
    LineTooLong,
    /// The head (start line + headers) is not UTF-8.
    NotUtf8,
    /// A bare CR or other control character where the grammar forbids it.
    BadCharacter,
    /// Request line is not `Method SP Request-URI SP SIP-Version`.
    BadRequestLine,
    /// Status line is not `SIP-Version SP Status-Code SP Reason-Phrase`.
    BadStatusLine,
    /// Status code not three digits in 100..=699.
    BadStatusCode,
    /// A well-formed SIP version other than 2.0 (answer 505).
    BadVersion,
    /// Method is not a token.
    BadMethod,
    /// Request-URI does not parse.
    BadRequestUri,
    /// Request-URI carries `?headers` (RFC 3261 §19.1.1 forbids them there).
    HeadersInRequestUri,
    /// A header line without a colon or with a bad name.
    BadHeaderLine,
    /// Content-Length is not a non-negative decimal number.
    BadContentLength,
    /// Several Content-Length values that disagree.
    ConflictingContentLength,
    /// A header field whose value does not match its grammar.
    BadHeader(HeaderName),
}

impl ParseError {
    /// The status code to answer a request that failed this way (400 or 505).
    pub fn status(&self) -> u16 {
        match self {
            ParseError::BadVersion => 505,
            ParseError::MessageTooLarge => 513,
            _ => 400,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ParseError::Empty => "Empty Message",
            ParseError::MessageTooLarge => "Message Too Large",
            ParseError::TooManyHeaders => "Too Many Header Fields",
            ParseError::LineTooLong => "Line Too Long",
            ParseError::NotUtf8 => "Header Not UTF-8",
            ParseError::BadCharacter => "Illegal Control Character",
            ParseError::BadRequestLine => "Malformed Request Line",
            ParseError::BadStatusLine => "Malformed Status Line",
            ParseError::BadStatusCode => "Bad Status Code",
            ParseError::BadVersion => "Version Not Supported",
            ParseError::BadMethod => "Malformed Method",
            ParseError::BadRequestUri => "Malformed Request-URI",
            ParseError::HeadersInRequestUri => "Headers Not Allowed In Request-URI",
            ParseError::BadHeaderLine => "Malformed Header Line",
            ParseError::BadContentLength => "Bad Content-Length",
            ParseError::ConflictingContentLength => "Conflicting Content-Length",
            ParseError::BadHeader(name) => return write!(f, "Malformed {} Header", name.as_str()),
        };
        f.write_str(s)
    }
}

impl std::error::Error for ParseError {}
