//! Times the service's password hash alone (bcrypt_sha256 at a given cost), so the `register` and
//! `login` durations of `make bench` can be read against the bcrypt work inside them.
//!
//! usage: cargo run --release -p auth-shared --example bcrypt_time -- [COST] [N]
//! COST defaults to `AUTH_BCRYPT_COST` or 12, N to 5. Prints one JSON line:
//! {"cost":12,"n":5,"hash_median_ms":..,"hash_min_ms":..,"verify_median_ms":..}

use std::time::Instant;

use shared::password::{PasswordHasher, Verification};

const PASSWORD: &str = "velvet-tundra-marmalade-42";

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let cost: u32 = args
        .next()
        .or_else(|| std::env::var("AUTH_BCRYPT_COST").ok())
        .map(|v| v.parse().expect("COST must be a whole number"))
        .unwrap_or(12);
    let n: usize = args
        .next()
        .map(|v| v.parse().expect("N must be a whole number"))
        .unwrap_or(5)
        .max(1);
    let hasher = PasswordHasher::new(cost);

    let mut hashes = Vec::with_capacity(n);
    let mut stored = String::new();
    for _ in 0..n {
        let start = Instant::now();
        stored = hasher.hash(PASSWORD).expect("hash");
        hashes.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let mut verifies = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let outcome = hasher.verify(PASSWORD, &stored);
        verifies.push(start.elapsed().as_secs_f64() * 1000.0);
        assert!(matches!(outcome, Verification::Match { .. }));
    }
    let min = hashes.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "{{\"cost\":{cost},\"n\":{n},\"hash_median_ms\":{:.2},\"hash_min_ms\":{min:.2},\"verify_median_ms\":{:.2}}}",
        median(hashes),
        median(verifies)
    );
}
