//! What the CPU can do, decided once per process: the instruction set the
//! kernels use ([`Isa`]) and the cache sizes the GEMM blocks for.
//!
//! The ISA is the best one the CPU has, unless `PIXEL_ISA=scalar|avx2|avx512`
//! (or [`set_isa`], which the CLI's `--isa` calls before any kernel runs)
//! forces another, so the same step can be A/B'd on one machine.

use std::sync::OnceLock;

/// An instruction set a CPU kernel has a path for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// The reference build: plain Rust (SSE2 on x86_64, which every x86_64 has).
    Scalar,
    /// AVX2 + FMA, 8 lanes.
    Avx2,
    /// AVX-512 F (+ BW, VL, DQ), 16 lanes.
    Avx512,
}

impl Isa {
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Parses `scalar`, `avx2` or `avx512`.
    pub fn parse(name: &str) -> Result<Isa, String> {
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name() == name.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("unknown ISA {name:?}: expected one of scalar, avx2, avx512"))
    }

    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            Isa::Avx2 => detect_avx2_fma(),
            Isa::Avx512 => detect_avx512(),
        }
    }

    /// The ISAs this CPU can run, slowest first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
    }

    /// The fastest ISA this CPU has.
    pub fn best() -> Isa {
        *Isa::available().last().expect("scalar is always available")
    }

    /// f32 lanes in one vector register.
    pub fn lanes(self) -> usize {
        match self {
            Isa::Scalar => 1,
            Isa::Avx2 => 8,
            Isa::Avx512 => 16,
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn detect_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn detect_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        detect_avx2_fma()
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512dq")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Runs `isa`'s code for a kernel: `$avx512` or `$avx2` (the entry points
/// [`crate::simd`]'s `simd_entry!` makes) or the scalar reference `$scalar`,
/// all with the same arguments. Panics, naming the ISA, when the CPU lacks it.
macro_rules! simd_dispatch {
    ($isa:expr, $scalar:path, $avx2:path, $avx512:path, ($($arg:expr),* $(,)?)) => {{
        let isa: $crate::cpu::Isa = $isa;
        assert!(isa.is_available(), "this CPU has no {isa}");
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX-512 (asserted above).
            $crate::cpu::Isa::Avx512 => unsafe { $avx512($($arg),*) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX2+FMA (asserted above).
            $crate::cpu::Isa::Avx2 => unsafe { $avx2($($arg),*) },
            _ => $scalar($($arg),*),
        }
    }};
}
pub(crate) use simd_dispatch;

static ACTIVE: OnceLock<Isa> = OnceLock::new();

/// The ISA `PIXEL_ISA` asks for (the best available when unset or empty).
/// Errors name the value, and say when the CPU lacks the ISA.
pub fn isa_from_env() -> Result<Isa, String> {
    match std::env::var("PIXEL_ISA") {
        Ok(v) if !v.trim().is_empty() => {
            let isa = Isa::parse(&v).map_err(|e| format!("PIXEL_ISA: {e}"))?;
            check_available(isa).map_err(|e| format!("PIXEL_ISA: {e}"))
        }
        _ => Ok(Isa::best()),
    }
}

fn check_available(isa: Isa) -> Result<Isa, String> {
    if isa.is_available() {
        Ok(isa)
    } else {
        let have: Vec<&str> = Isa::available().iter().map(|i| i.name()).collect();
        Err(format!(
            "this CPU has no {isa} (it has: {}); see `pixel info`",
            have.join(", ")
        ))
    }
}

/// Fixes the ISA for the rest of the process. Fails when the CPU lacks it, or
/// when kernels already ran with another one.
pub fn set_isa(isa: Isa) -> Result<(), String> {
    check_available(isa)?;
    let got = *ACTIVE.get_or_init(|| isa);
    if got == isa {
        Ok(())
    } else {
        Err(format!(
            "the ISA is already fixed to {got} for this process; cannot switch to {isa}"
        ))
    }
}

/// The ISA every CPU kernel uses, fixed on first use.
///
/// # Panics
/// When `PIXEL_ISA` names an unknown ISA or one this CPU lacks (the CLI checks
/// it first with [`isa_from_env`], so this only reaches library users).
pub fn isa() -> Isa {
    *ACTIVE.get_or_init(|| isa_from_env().unwrap_or_else(|e| panic!("{e}")))
}

/// Data cache sizes of one core, in bytes (L3: the whole cache).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caches {
    pub l1d: usize,
    pub l2: usize,
    pub l3: usize,
}

impl Caches {
    /// Sizes assumed when the OS does not report them (a typical desktop core).
    pub const FALLBACK: Caches = Caches {
        l1d: 32 << 10,
        l2: 512 << 10,
        l3: 8 << 20,
    };
}

/// The caches of CPU 0 as Linux reports them (`/sys/devices/system/cpu`),
/// [`Caches::FALLBACK`] for any level it does not report.
pub fn caches() -> Caches {
    static CACHES: OnceLock<Caches> = OnceLock::new();
    *CACHES.get_or_init(read_caches)
}

fn read_caches() -> Caches {
    let mut c = Caches::FALLBACK;
    for index in 0..8 {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{index}");
        let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).ok();
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
        else {
            continue;
        };
        let Some(bytes) = parse_cache_size(size.trim()) else {
            continue;
        };
        match (level.trim(), kind.trim()) {
            ("1", "Data") => c.l1d = bytes,
            ("2", "Unified" | "Data") => c.l2 = bytes,
            ("3", "Unified" | "Data") => c.l3 = bytes,
            _ => {}
        }
    }
    c
}

/// `48K`, `2048K`, `260M` -> bytes.
fn parse_cache_size(s: &str) -> Option<usize> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: usize = digits.parse().ok()?;
    match unit {
        "" => Some(n),
        "K" => Some(n << 10),
        "M" => Some(n << 20),
        "G" => Some(n << 30),
        _ => None,
    }
}

/// The CPU's model name (`/proc/cpuinfo`), or "unknown CPU".
pub fn model_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_isa_names_and_rejects_others() {
        assert_eq!(Isa::parse("AVX512"), Ok(Isa::Avx512));
        assert_eq!(Isa::parse("scalar"), Ok(Isa::Scalar));
        let e = Isa::parse("sse9").unwrap_err();
        assert!(e.contains("sse9") && e.contains("avx2"), "{e}");
    }

    #[test]
    fn parses_cache_sizes() {
        assert_eq!(parse_cache_size("48K"), Some(48 << 10));
        assert_eq!(parse_cache_size("260M"), Some(260 << 20));
        assert_eq!(parse_cache_size("12"), Some(12));
        assert_eq!(parse_cache_size("x"), None);
    }

    #[test]
    fn scalar_is_always_available_and_best_is_available() {
        assert!(Isa::Scalar.is_available());
        assert!(Isa::best().is_available());
        let c = caches();
        assert!(c.l1d >= 4096 && c.l2 >= c.l1d, "{c:?}");
    }
}
