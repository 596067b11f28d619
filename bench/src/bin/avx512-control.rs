//! A control for `bench/x86-v4-without-avx512.sh`: executes one AVX-512
//! instruction without asking the CPU first, so it must die with SIGILL on a
//! CPU (or an emulated CPU) without AVX-512. If it does not, the emulation the
//! script relies on is not hiding AVX-512 and the script's check proves nothing.

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn sum_of_sums(left: &[f32; 16], right: &[f32; 16]) -> f32 {
    use std::arch::x86_64::{_mm512_add_ps, _mm512_loadu_ps, _mm512_reduce_add_ps};
    // SAFETY: both arrays hold exactly the 16 f32 lanes one unaligned 512-bit load reads.
    let (left, right) = unsafe { (_mm512_loadu_ps(left.as_ptr()), _mm512_loadu_ps(right.as_ptr())) };
    _mm512_reduce_add_ps(_mm512_add_ps(left, right))
}

#[cfg(target_arch = "x86_64")]
fn main() {
    let left = std::hint::black_box([1.0f32; 16]);
    let right = std::hint::black_box([2.0f32; 16]);
    // SAFETY: none, on purpose: without AVX-512 this is the illegal instruction
    // the control exists to execute.
    let sum = unsafe { sum_of_sums(&left, &right) };
    println!("executed an AVX-512 instruction: sum {sum}");
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("avx512-control is for x86-64 only");
    std::process::exit(2);
}
