use pixel_kernels::{peak, Isa};
use std::time::Duration;
fn main() {
    for isa in Isa::available() {
        let one = peak::fma_peak_gflops(isa, 1, Duration::from_millis(300));
        let all = peak::fma_peak_gflops(
            isa,
            rayon::current_num_threads(),
            Duration::from_millis(300),
        );
        println!("{isa}: 1 thread {one:.1} GFLOP/s, all {all:.1}");
    }
    let bw = peak::memory_bandwidth(Duration::from_millis(1500));
    println!("{bw:?}");
}
