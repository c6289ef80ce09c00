//! The model named by a request path, for the APIs whose responses do not name it (Bedrock)
//! or may not (Gemini without `modelVersion`).

use super::Provider;

/// Bedrock's `/model/{modelId}/converse` (percent-decoded: inference profile ARNs and
/// `…-v2:0` ids arrive encoded); Gemini's `…/models/{model}:generateContent`.
pub fn model(provider: Provider, path: &[u8]) -> Option<String> {
    let raw = match provider {
        Provider::Bedrock => {
            let at = find(path, b"/model/")? + b"/model/".len();
            let rest = &path[at..];
            &rest[..rest.iter().position(|&b| b == b'/')?]
        }
        Provider::Gemini => {
            let at = find(path, b"/models/")? + b"/models/".len();
            let rest = &path[at..];
            &rest[..rest.iter().position(|&b| b == b':' || b == b'/')?]
        }
        _ => return None,
    };
    let decoded = percent_decode(raw)?;
    (!decoded.is_empty() && decoded.len() <= super::MODEL_MAX).then_some(decoded)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `%XX` escapes decoded; `None` for a broken escape or text that is not UTF-8.
fn percent_decode(s: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = std::str::from_utf8(s.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_from_bedrock_and_gemini_paths() {
        let b = Provider::Bedrock;
        assert_eq!(
            model(
                b,
                b"/model/us.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse"
            )
            .as_deref(),
            Some("us.anthropic.claude-3-7-sonnet-20250219-v1:0")
        );
        assert_eq!(
            model(
                b,
                b"/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fx/converse"
            )
            .as_deref(),
            Some("arn:aws:bedrock:us-east-1:1:inference-profile/x")
        );
        assert_eq!(
            model(b, b"/model/amazon.nova-lite-v1:0/converse").as_deref(),
            Some("amazon.nova-lite-v1:0")
        );
        assert_eq!(model(b, b"/model/x%zz/converse"), None);
        assert_eq!(model(b, b"/converse"), None);
        let g = Provider::Gemini;
        assert_eq!(
            model(g, b"/v1beta/models/gemini-2.5-flash:streamGenerateContent").as_deref(),
            Some("gemini-2.5-flash")
        );
        assert_eq!(model(g, b"/v1beta/models/gemini-2.5-flash"), None);
        assert_eq!(model(Provider::OpenAi, b"/model/x/converse"), None);
    }
}
