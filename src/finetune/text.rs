//! Light detokenisation of GLUE's tokenised sentences before rendering.
//!
//! GLUE text is tokenised ("it 's a charming , funny movie . "): drawn as is,
//! every clitic and punctuation mark floats after a space that natural text
//! does not have. PIXEL renders text, so the original recipe rejoins tokens
//! first (`glue_strip_spaces`); this is our own version of that idea: no space
//! before closing punctuation and clitics, none after opening brackets.

/// Tokens glued to the previous token.
const ATTACH_LEFT: [&str; 16] = [
    ".", ",", "!", "?", ";", ":", ")", "]", "}", "%", "'s", "n't", "'re", "'ve", "'ll", "'d",
];
/// Tokens glued to the next token.
const ATTACH_RIGHT: [&str; 4] = ["(", "[", "{", "$"];

/// Rejoins a whitespace-tokenised sentence; `` and '' tokens become straight quotes.
pub fn detokenize(sentence: &str) -> String {
    let mut out = String::with_capacity(sentence.len());
    let mut glue_next = true; // no space before the first token
    for token in sentence.split_whitespace() {
        let token = match token {
            "``" | "''" => "\"",
            "-lrb-" => "(",
            "-rrb-" => ")",
            t => t,
        };
        let lower = token.to_ascii_lowercase();
        let attach_left = ATTACH_LEFT.contains(&lower.as_str()) || lower == "'m";
        if !glue_next && !attach_left {
            out.push(' ');
        }
        out.push_str(token);
        glue_next = ATTACH_RIGHT.contains(&token);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::detokenize;

    #[test]
    fn rejoins_clitics_and_punctuation() {
        assert_eq!(
            detokenize("it 's a charming , funny movie . "),
            "it's a charming, funny movie."
        );
        assert_eq!(
            detokenize("i did n't like it ( at all ) !"),
            "i didn't like it (at all)!"
        );
        assert_eq!(detokenize("   "), "");
    }
}
