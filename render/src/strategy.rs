//! The rendering strategies of Lotz et al. (2023), chosen by name (`--rendering`, config.json's
//! `"rendering"`).

/// How text is laid out into patches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RenderingStrategy {
    /// PIXEL's renderer: text drawn as one shaped line from x = 2 (SPEC 1.3); word lists
    /// start every word on a patch boundary.
    #[default]
    Continuous,
    /// PangoCairoBigramsRenderer: every word cut into 2-character chunks, each chunk from a
    /// patch boundary, each character shaped alone; no spaces are drawn.
    Bigrams,
    /// Every character shaped alone in a fixed 8-pixel cell (two per patch); words separated
    /// by one empty cell, word lists start every word on a patch boundary.
    Mono,
    /// Every word shaped as a whole from a patch boundary (the word-list layout of
    /// `Continuous` applied to sentences and pairs too).
    Words,
}

impl RenderingStrategy {
    /// Every strategy, in the order the names are listed in messages.
    pub const ALL: [RenderingStrategy; 4] = [
        RenderingStrategy::Continuous,
        RenderingStrategy::Bigrams,
        RenderingStrategy::Mono,
        RenderingStrategy::Words,
    ];

    /// The name `--rendering` and config.json use.
    pub fn name(self) -> &'static str {
        match self {
            RenderingStrategy::Continuous => "continuous",
            RenderingStrategy::Bigrams => "bigrams",
            RenderingStrategy::Mono => "mono",
            RenderingStrategy::Words => "words",
        }
    }

    /// "continuous, bigrams, mono, words": the allowed names, for messages.
    pub fn allowed_names() -> String {
        RenderingStrategy::ALL
            .map(RenderingStrategy::name)
            .join(", ")
    }
}

impl std::fmt::Display for RenderingStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for RenderingStrategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        RenderingStrategy::ALL
            .into_iter()
            .find(|r| r.name() == wanted)
            .ok_or_else(|| {
                format!(
                    "unknown rendering {s:?} (expected one of: {})",
                    RenderingStrategy::allowed_names()
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::RenderingStrategy;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_allowed_ones() {
        for r in RenderingStrategy::ALL {
            assert_eq!(r.name().parse::<RenderingStrategy>(), Ok(r));
            assert_eq!(r.to_string(), r.name());
        }
        assert_eq!(
            " Bigrams ".parse::<RenderingStrategy>(),
            Ok(RenderingStrategy::Bigrams)
        );
        let err = "bigram".parse::<RenderingStrategy>().unwrap_err();
        assert!(err.contains("\"bigram\""), "{err}");
        assert!(err.contains("continuous, bigrams, mono, words"), "{err}");
        assert_eq!(RenderingStrategy::default(), RenderingStrategy::Continuous);
    }
}
