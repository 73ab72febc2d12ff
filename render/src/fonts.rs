//! Font loading and per-character fallback.
//!
//! A [`FontSet`] is an ordered list of faces: the main font first, then fallbacks. A character is
//! drawn with the first face whose cmap has it, so the same text and fonts always pick the same
//! faces (no fontconfig, no system fonts).

use std::path::{Path, PathBuf};

use crate::raster::RasterFont;
use crate::RenderError;

/// The default font set, embedded so rendering works on a fresh machine (licenses in data/fonts/).
const EMBEDDED_MAIN: (&str, &[u8]) = (
    "NotoSans-Regular.ttf",
    include_bytes!("../../data/fonts/NotoSans-Regular.ttf"),
);
const EMBEDDED_FALLBACKS: [(&str, &[u8]); 7] = [
    (
        "NotoSansArabic-Regular.ttf",
        include_bytes!("../../data/fonts/NotoSansArabic-Regular.ttf"),
    ),
    (
        "NotoSansHebrew-Regular.ttf",
        include_bytes!("../../data/fonts/NotoSansHebrew-Regular.ttf"),
    ),
    (
        "NotoSansDevanagari-Regular.ttf",
        include_bytes!("../../data/fonts/NotoSansDevanagari-Regular.ttf"),
    ),
    (
        "NotoSansTamil-Regular.ttf",
        include_bytes!("../../data/fonts/NotoSansTamil-Regular.ttf"),
    ),
    (
        "NotoSansEthiopic-Regular.ttf",
        include_bytes!("../../data/fonts/NotoSansEthiopic-Regular.ttf"),
    ),
    (
        "NotoSansCoptic-Regular.ttf",
        include_bytes!("../../data/fonts/NotoSansCoptic-Regular.ttf"),
    ),
    (
        "NotoSansCJK-Subset.otf",
        include_bytes!("../../data/fonts/NotoSansCJK-Subset.otf"),
    ),
];

/// Which fonts to load. `Default` gives the embedded Noto set.
#[derive(Clone, Debug, Default)]
pub struct FontConfig {
    /// Main font file (GoNotoCurrent.ttf in the reference); `None` = embedded Noto Sans.
    pub main_font: Option<PathBuf>,
    /// Directory whose `*.ttf` / `*.otf` / `*.ttc` files are tried after the main font, by file name.
    pub fallback_dir: Option<PathBuf>,
    /// Skip the embedded script fonts (by default they are tried after the user's fallbacks).
    pub no_default_fallbacks: bool,
}

/// One loaded face: shaping data (rustybuzz) and outlines (raster module).
pub(crate) struct Face {
    /// File name, for messages.
    pub name: String,
    pub shaper: rustybuzz::Face<'static>,
    pub raster: RasterFont,
    pub units_per_em: f32,
}

/// Line metrics of the main font at the render size, rounded like hinted FreeType metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineMetrics {
    /// Pixels above the baseline (hhea ascender, rounded up).
    pub ascent: i32,
    /// Pixels below the baseline (hhea descender, rounded up).
    pub descent: i32,
}

/// Ordered faces: index 0 is the main font.
pub struct FontSet {
    pub(crate) faces: Vec<Face>,
    /// Em size in pixels (13.333 for 8 pt at 120 DPI, kept at Pango's 1/1024 precision).
    pub(crate) px_per_em: f32,
    /// First face per code point below `FAST_CHARS` (`NO_FACE` = none): cmap lookups are slow.
    first_face: Vec<u8>,
}

/// Code points with a precomputed first face (Latin, Greek, Cyrillic, Hebrew, Arabic).
const FAST_CHARS: usize = 0x800;
const NO_FACE: u8 = u8::MAX;

impl FontSet {
    /// Loads the fonts named in `config` at `px_per_em` pixels per em.
    pub fn load(config: &FontConfig, px_per_em: f32) -> Result<Self, RenderError> {
        let mut faces = Vec::new();
        match &config.main_font {
            Some(path) => faces.push(face_from_file(path)?),
            None => faces.push(face_from_static(EMBEDDED_MAIN.0, EMBEDDED_MAIN.1)?),
        }
        if let Some(dir) = &config.fallback_dir {
            for path in font_files_in(dir)? {
                faces.push(face_from_file(&path)?);
            }
        }
        if !config.no_default_fallbacks {
            for (name, data) in EMBEDDED_FALLBACKS {
                faces.push(face_from_static(name, data)?);
            }
        }
        let mut set = FontSet {
            faces,
            px_per_em,
            first_face: Vec::new(),
        };
        set.first_face = (0..FAST_CHARS as u32)
            .map(|cp| {
                char::from_u32(cp)
                    .and_then(|c| set.search_face(c))
                    .map_or(NO_FACE, |f| f.min(NO_FACE as usize - 1) as u8)
            })
            .collect();
        Ok(set)
    }

    /// Names of the loaded faces in fallback order.
    pub fn face_names(&self) -> Vec<&str> {
        self.faces.iter().map(|f| f.name.as_str()).collect()
    }

    /// Pixels per font unit for face `face`.
    pub(crate) fn scale(&self, face: usize) -> f32 {
        self.px_per_em / self.faces[face].units_per_em
    }

    /// First face that maps `c` to a real glyph, if any.
    pub(crate) fn face_for_char(&self, c: char) -> Option<usize> {
        match self.first_face.get(c as usize) {
            Some(&NO_FACE) => None,
            Some(&f) if (f as usize) < NO_FACE as usize - 1 => Some(f as usize),
            _ => self.search_face(c),
        }
    }

    fn search_face(&self, c: char) -> Option<usize> {
        self.faces
            .iter()
            .position(|f| f.shaper.glyph_index(c).is_some_and(|g| g.0 != 0))
    }

    /// Whether face `face` has a glyph for `c`.
    pub(crate) fn has_char(&self, face: usize, c: char) -> bool {
        if self.face_for_char(c) == Some(face) {
            return true;
        }
        self.faces[face]
            .shaper
            .glyph_index(c)
            .is_some_and(|g| g.0 != 0)
    }

    /// Main font line metrics; every line uses them, as in GoNotoCurrent where all scripts share
    /// Noto Sans' ascender and descender.
    pub fn line_metrics(&self) -> LineMetrics {
        let face = &self.faces[0].shaper;
        let scale = self.scale(0);
        // FreeType rounds hinted ascent up and descent down (away from the baseline).
        let ascent = (face.ascender() as f32 * scale).ceil() as i32;
        let descent = (-(face.descender() as f32) * scale).ceil() as i32;
        LineMetrics { ascent, descent }
    }
}

/// Font files in `dir` with a name ending in "tf" or ".ttc", sorted so the order is reproducible.
fn font_files_in(dir: &Path) -> Result<Vec<PathBuf>, RenderError> {
    let entries = std::fs::read_dir(dir).map_err(|e| RenderError::FontDir {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            p.is_file() && (name.ends_with("tf") || name.ends_with(".ttc"))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn face_from_file(path: &Path) -> Result<Face, RenderError> {
    let bytes = std::fs::read(path).map_err(|e| RenderError::Font {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    // Faces borrow their bytes for the life of the process; font sets are built once per run.
    let data: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    let name = path.display().to_string();
    parse_face(name, data).map_err(|reason| RenderError::Font {
        path: path.to_path_buf(),
        reason,
    })
}

fn face_from_static(name: &str, data: &'static [u8]) -> Result<Face, RenderError> {
    parse_face(name.to_string(), data).map_err(|reason| RenderError::Font {
        path: PathBuf::from(format!("<embedded {name}>")),
        reason,
    })
}

fn parse_face(name: String, data: &'static [u8]) -> Result<Face, String> {
    let shaper = rustybuzz::Face::from_slice(data, 0)
        .ok_or_else(|| "not a TrueType/OpenType font".to_string())?;
    let raster = RasterFont::parse(data)
        .ok_or_else(|| "outlines could not be read (not a TrueType/OpenType font)".to_string())?;
    let units_per_em = shaper.units_per_em() as f32;
    Ok(Face {
        name,
        shaper,
        raster,
        units_per_em,
    })
}
