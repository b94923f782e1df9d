//! Seeded generator of labeled 1 Hz memory series: leaks under a GC sawtooth and the healthy
//! shapes a leak detector must not confuse with them. Deterministic per (pattern, seed).
//!
//! Parameters are drawn from the seed within the ranges documented on each [`Pattern`]; sizes
//! are in MB = 2^20 bytes. Every series is the sum of a base, the pattern's level, an optional
//! GC sawtooth, optional transient spikes and uniform noise, clamped at zero.

mod components;

use plimsoll_analysis::Observation;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use components::{log_uniform, noise, Sawtooth, Spikes};

/// One MB as the generator counts it: 2^20 bytes.
pub const MB: f64 = 1024.0 * 1024.0;

/// Default series length: 40 minutes at 1 Hz.
pub const DEFAULT_SAMPLES: u64 = 2400;

/// Whether a series leaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// The retained memory grows without bound from the leak start on.
    Leak,
    /// The retained memory is bounded.
    NoLeak,
}

impl Label {
    /// The manifest spelling: `leak` or `no-leak`.
    pub fn name(self) -> &'static str {
        match self {
            Label::Leak => "leak",
            Label::NoLeak => "no-leak",
        }
    }
}

/// The shapes of series. Common to all: base 30–300 MB (uniform), noise ±max(0.5 % of base,
/// 300 KB). "Background" means a GC sawtooth of amplitude 0–100 MB and period 5–90 s (uniform,
/// random phase) plus transient spikes (each second with probability 0.2–1 %, height 10–200 MB
/// log-uniform, held 1–10 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Linear leak of 0.5–20 MB/min (log-uniform) starting at 0–10 min, with background.
    LeakLinear,
    /// The same leak arriving in chunks every 10–60 s.
    LeakStepwise,
    /// The linear leak where the level each sawtooth tooth returns to jitters by ±2 MB.
    LeakNoisyTrough,
    /// Healthy sawtooth of amplitude 1–300 MB and period 2–300 s (both log-uniform) with
    /// spikes.
    Sawtooth,
    /// Warm-up of 10–500 MB (log-uniform) filled linearly over 1–10 min, then flat; background.
    WarmupLinear,
    /// Warm-up approaching its size exponentially, time constant 20–200 s (95 % within
    /// 1–10 min); background.
    WarmupExp,
    /// Logistic warm-up going from 5 % to 95 % of its size within 1–10 min; background.
    WarmupLogistic,
    /// One-time step of 10 MB – 2 GB (log-uniform) at 5–90 % of the series, reached within
    /// 1–10 s; background.
    Step,
    /// Grows linearly by 5–300 MB (log-uniform) then drops back to base, period 30–300 s
    /// (log-uniform, each cycle ±10 %), with the background sawtooth but no spikes.
    PeriodicClear,
    /// Transient allocations of 50 MB – 1 GB (log-uniform) held 1–30 s, a mean 1–10 min
    /// apart; no sawtooth.
    Spikes,
    /// Base and noise only.
    Flat,
}

impl Pattern {
    /// Every pattern, leaks first.
    pub const ALL: [Pattern; 11] = [
        Pattern::LeakLinear,
        Pattern::LeakStepwise,
        Pattern::LeakNoisyTrough,
        Pattern::Sawtooth,
        Pattern::WarmupLinear,
        Pattern::WarmupExp,
        Pattern::WarmupLogistic,
        Pattern::Step,
        Pattern::PeriodicClear,
        Pattern::Spikes,
        Pattern::Flat,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::LeakLinear => "leak-linear",
            Pattern::LeakStepwise => "leak-stepwise",
            Pattern::LeakNoisyTrough => "leak-noisy-trough",
            Pattern::Sawtooth => "sawtooth",
            Pattern::WarmupLinear => "warmup-linear",
            Pattern::WarmupExp => "warmup-exp",
            Pattern::WarmupLogistic => "warmup-logistic",
            Pattern::Step => "step",
            Pattern::PeriodicClear => "periodic-clear",
            Pattern::Spikes => "spikes",
            Pattern::Flat => "flat",
        }
    }

    /// The pattern with this [`Pattern::name`].
    pub fn from_name(name: &str) -> Option<Pattern> {
        Pattern::ALL
            .into_iter()
            .find(|pattern| pattern.name() == name)
    }

    pub fn label(self) -> Label {
        match self {
            Pattern::LeakLinear | Pattern::LeakStepwise | Pattern::LeakNoisyTrough => Label::Leak,
            _ => Label::NoLeak,
        }
    }

    fn index(self) -> u64 {
        Pattern::ALL
            .iter()
            .position(|&p| p == self)
            .map_or(0, |i| i as u64)
    }
}

/// What is true of a generated series, known from its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    pub label: Label,
    /// When the leak starts, seconds after the first sample; `None` for healthy series.
    pub leak_start_s: Option<f64>,
    /// Average leak rate, bytes per second; `None` for healthy series.
    pub leak_rate_bytes_per_s: Option<f64>,
    /// The drawn parameters, for reports: `base=120MB rate=3.2MB/min …`.
    pub description: String,
}

/// The pattern's own level above the base, with the state it needs from sample to sample.
#[derive(Debug, Clone)]
enum Model {
    Leak {
        rate: f64,
        start_s: f64,
        chunk_s: Option<f64>,
        trough: Option<TroughJitter>,
    },
    Warmup {
        size: f64,
        shape: WarmupShape,
    },
    Step {
        size: f64,
        at_s: f64,
        rise_s: f64,
    },
    PeriodicClear {
        growth: f64,
        period_s: f64,
        cycle_start_s: f64,
        cycle_len_s: f64,
    },
    Flat,
}

#[derive(Debug, Clone, Copy)]
enum WarmupShape {
    Linear { fill_s: f64 },
    Exp { tau_s: f64 },
    Logistic { mid_s: f64, steepness: f64 },
}

/// The trough offset of the current sawtooth tooth, redrawn at each drop.
#[derive(Debug, Clone, Copy)]
struct TroughJitter {
    amplitude: f64,
    cycle: u64,
    offset: f64,
}

/// One generated point: the value and how much of it is leaked memory, bytes.
#[derive(Debug, Clone, Copy)]
struct Point {
    observation: Observation,
    leak: f64,
}

/// A lazily generated series: an iterator of observations at t_s = 0, 1, 2, … seconds, so that
/// arbitrarily long series cost no memory.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: Pcg64Mcg,
    t: u64,
    samples: u64,
    base: f64,
    model: Model,
    saw: Option<Sawtooth>,
    spikes: Option<Spikes>,
    noise_amplitude: f64,
    truth: Truth,
}

impl Generator {
    /// The series `(pattern, seed)` with `samples` observations at 1 Hz.
    pub fn new(pattern: Pattern, seed: u64, samples: u64) -> Generator {
        let stream = (pattern.index() + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rng = Pcg64Mcg::seed_from_u64(seed ^ stream);
        let duration_s = samples as f64;
        let base = rng.random_range(30.0 * MB..=300.0 * MB);
        let noise_amplitude = (0.005 * base).max(300.0 * 1024.0);
        let mut parts = vec![format!("base={:.0}MB", base / MB)];

        let background_saw = |rng: &mut Pcg64Mcg| {
            let amplitude = rng.random_range(0.0..=100.0 * MB);
            let period_s = rng.random_range(5.0..=90.0);
            let phase_s = rng.random_range(0.0..period_s);
            Sawtooth {
                amplitude,
                period_s,
                phase_s,
            }
        };
        let background_spikes = |rng: &mut Pcg64Mcg| {
            Spikes::new(
                rng.random_range(0.002..=0.01),
                (10.0 * MB, 200.0 * MB),
                (1, 10),
            )
        };

        let (model, saw, spikes) = match pattern {
            Pattern::LeakLinear | Pattern::LeakStepwise | Pattern::LeakNoisyTrough => {
                let rate = log_uniform(&mut rng, 0.5, 20.0) * MB / 60.0;
                let start_s = rng.random_range(0.0..=600.0_f64.min(0.25 * duration_s));
                parts.push(format!(
                    "rate={:.2}MB/min start={start_s:.0}s",
                    rate * 60.0 / MB
                ));
                let chunk_s = (pattern == Pattern::LeakStepwise).then(|| {
                    let chunk_s = rng.random_range(10.0..=60.0_f64).round();
                    parts.push(format!("chunk={chunk_s:.0}s"));
                    chunk_s
                });
                let trough = (pattern == Pattern::LeakNoisyTrough).then(|| {
                    parts.push("trough=±2MB".to_owned());
                    TroughJitter {
                        amplitude: 2.0 * MB,
                        cycle: u64::MAX,
                        offset: 0.0,
                    }
                });
                let saw = background_saw(&mut rng);
                let spikes = background_spikes(&mut rng);
                (
                    Model::Leak {
                        rate,
                        start_s,
                        chunk_s,
                        trough,
                    },
                    Some(saw),
                    Some(spikes),
                )
            }
            Pattern::Sawtooth => {
                let amplitude = log_uniform(&mut rng, 1.0, 300.0) * MB;
                let period_s = log_uniform(&mut rng, 2.0, 300.0);
                let phase_s = rng.random_range(0.0..period_s);
                let saw = Sawtooth {
                    amplitude,
                    period_s,
                    phase_s,
                };
                (Model::Flat, Some(saw), Some(background_spikes(&mut rng)))
            }
            Pattern::WarmupLinear | Pattern::WarmupExp | Pattern::WarmupLogistic => {
                let size = log_uniform(&mut rng, 10.0, 500.0) * MB;
                let shape = match pattern {
                    Pattern::WarmupLinear => WarmupShape::Linear {
                        fill_s: rng.random_range(60.0..=600.0),
                    },
                    Pattern::WarmupExp => WarmupShape::Exp {
                        tau_s: rng.random_range(20.0..=200.0),
                    },
                    _ => {
                        // 5 % at t = 0, 95 % at `rise_s`: the logistic spans 2 ln 19 / k.
                        let rise_s: f64 = rng.random_range(60.0..=600.0);
                        WarmupShape::Logistic {
                            mid_s: rise_s / 2.0,
                            steepness: 2.0 * 19.0_f64.ln() / rise_s,
                        }
                    }
                };
                parts.push(format!("size={:.0}MB {}", size / MB, shape.describe()));
                let saw = background_saw(&mut rng);
                let spikes = background_spikes(&mut rng);
                (Model::Warmup { size, shape }, Some(saw), Some(spikes))
            }
            Pattern::Step => {
                let size = log_uniform(&mut rng, 10.0, 2048.0) * MB;
                let at_s = rng
                    .random_range(0.05 * duration_s..=0.9 * duration_s)
                    .round();
                let rise_s = rng.random_range(1.0..=10.0_f64).round();
                parts.push(format!(
                    "step={:.0}MB at={at_s:.0}s rise={rise_s:.0}s",
                    size / MB
                ));
                let saw = background_saw(&mut rng);
                let spikes = background_spikes(&mut rng);
                (Model::Step { size, at_s, rise_s }, Some(saw), Some(spikes))
            }
            Pattern::PeriodicClear => {
                let growth = log_uniform(&mut rng, 5.0, 300.0) * MB;
                let period_s = log_uniform(&mut rng, 30.0, 300.0);
                parts.push(format!("clear={:.0}MB/{period_s:.0}s±10%", growth / MB));
                let cycle_len_s = period_s * rng.random_range(0.9..=1.1);
                let model = Model::PeriodicClear {
                    growth,
                    period_s,
                    cycle_start_s: 0.0,
                    cycle_len_s,
                };
                (model, Some(background_saw(&mut rng)), None)
            }
            Pattern::Spikes => {
                let mean_gap_s = rng.random_range(60.0..=600.0);
                let spikes = Spikes::new(1.0 / mean_gap_s, (50.0 * MB, 1024.0 * MB), (1, 30));
                (Model::Flat, None, Some(spikes))
            }
            Pattern::Flat => (Model::Flat, None, None),
        };
        if let Some(saw) = &saw {
            parts.push(saw.describe());
        }
        if let Some(spikes) = &spikes {
            parts.push(spikes.describe());
        }
        let (leak_start_s, leak_rate_bytes_per_s) = match &model {
            Model::Leak { rate, start_s, .. } => (Some(*start_s), Some(*rate)),
            _ => (None, None),
        };
        let truth = Truth {
            label: pattern.label(),
            leak_start_s,
            leak_rate_bytes_per_s,
            description: parts.join(" "),
        };
        Generator {
            rng,
            t: 0,
            samples,
            base,
            model,
            saw,
            spikes,
            noise_amplitude,
            truth,
        }
    }

    /// What is true of this series.
    pub fn truth(&self) -> &Truth {
        &self.truth
    }

    /// The pattern's level above the base at second `t`, and the leaked part of it, bytes.
    fn level(&mut self, t_s: f64) -> (f64, f64) {
        match &mut self.model {
            Model::Leak {
                rate,
                start_s,
                chunk_s,
                trough,
            } => {
                let elapsed = (t_s - *start_s).max(0.0);
                let leaked = match chunk_s {
                    Some(chunk) => *rate * *chunk * (elapsed / *chunk).floor(),
                    None => *rate * elapsed,
                };
                let jitter = match (trough, &self.saw) {
                    (Some(trough), Some(saw)) => {
                        let cycle = saw.cycle(t_s);
                        if cycle != trough.cycle {
                            trough.cycle = cycle;
                            trough.offset =
                                self.rng.random_range(-trough.amplitude..=trough.amplitude);
                        }
                        trough.offset
                    }
                    _ => 0.0,
                };
                (leaked + jitter, leaked)
            }
            Model::Warmup { size, shape } => (*size * shape.fraction(t_s), 0.0),
            Model::Step { size, at_s, rise_s } => {
                (*size * ((t_s - *at_s) / *rise_s).clamp(0.0, 1.0), 0.0)
            }
            Model::PeriodicClear {
                growth,
                period_s,
                cycle_start_s,
                cycle_len_s,
            } => {
                while t_s >= *cycle_start_s + *cycle_len_s {
                    *cycle_start_s += *cycle_len_s;
                    *cycle_len_s = *period_s * self.rng.random_range(0.9..=1.1);
                }
                (*growth * (t_s - *cycle_start_s) / *cycle_len_s, 0.0)
            }
            Model::Flat => (0.0, 0.0),
        }
    }

    fn next_point(&mut self) -> Option<Point> {
        if self.t >= self.samples {
            return None;
        }
        let t = self.t;
        self.t += 1;
        let t_s = t as f64;
        let (level, leak) = self.level(t_s);
        let saw = self.saw.map_or(0.0, |saw| saw.at(t_s));
        let spikes = match &mut self.spikes {
            Some(spikes) => spikes.step(&mut self.rng, t),
            None => 0.0,
        };
        let value = self.base + level + saw + spikes + noise(&mut self.rng, self.noise_amplitude);
        let observation = Observation {
            t_s,
            rss_bytes: value.max(0.0).round() as u64,
            heap_used_after_gc_bytes: None,
        };
        Some(Point { observation, leak })
    }
}

impl Iterator for Generator {
    type Item = Observation;

    fn next(&mut self) -> Option<Observation> {
        self.next_point().map(|point| point.observation)
    }
}

impl WarmupShape {
    /// How much of the warm-up is filled at `t_s`, from 0 to 1.
    fn fraction(self, t_s: f64) -> f64 {
        match self {
            WarmupShape::Linear { fill_s } => (t_s / fill_s).min(1.0),
            WarmupShape::Exp { tau_s } => 1.0 - (-t_s / tau_s).exp(),
            WarmupShape::Logistic { mid_s, steepness } => {
                1.0 / (1.0 + (-steepness * (t_s - mid_s)).exp())
            }
        }
    }

    fn describe(self) -> String {
        match self {
            WarmupShape::Linear { fill_s } => format!("fill={fill_s:.0}s"),
            WarmupShape::Exp { tau_s } => format!("tau={tau_s:.0}s"),
            WarmupShape::Logistic { mid_s, .. } => format!("rise5-95%={:.0}s", 2.0 * mid_s),
        }
    }
}

/// A generated series held in memory, with its truth.
#[derive(Debug, Clone)]
pub struct Series {
    pub pattern: Pattern,
    pub seed: u64,
    pub truth: Truth,
    pub observations: Vec<Observation>,
    /// Highest value of the series with the leaked memory taken out, bytes.
    pub healthy_peak_bytes: u64,
}

impl Series {
    /// Generates `(pattern, seed)` with `samples` observations.
    pub fn generate(pattern: Pattern, seed: u64, samples: u64) -> Series {
        let mut generator = Generator::new(pattern, seed, samples);
        let mut observations = Vec::with_capacity(usize::try_from(samples).unwrap_or(0));
        let mut healthy_peak = 0.0_f64;
        while let Some(point) = generator.next_point() {
            healthy_peak = healthy_peak.max(point.observation.rss_bytes as f64 - point.leak);
            observations.push(point.observation);
        }
        let truth = generator.truth;
        Series {
            pattern,
            seed,
            truth,
            observations,
            healthy_peak_bytes: healthy_peak.max(0.0) as u64,
        }
    }

    /// The budget the baselines project against: twice the healthy peak, so a healthy series
    /// never gets near it and a leak reaches it eventually.
    pub fn budget_bytes(&self) -> u64 {
        self.healthy_peak_bytes.saturating_mul(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_the_same_series() {
        for pattern in Pattern::ALL {
            let a = Series::generate(pattern, 42, 600);
            let b = Series::generate(pattern, 42, 600);
            assert_eq!(a.observations, b.observations, "{}", pattern.name());
            assert_eq!(a.truth, b.truth);
            let c = Series::generate(pattern, 43, 600);
            assert_ne!(a.observations, c.observations, "{}", pattern.name());
        }
    }

    #[test]
    fn the_iterator_and_the_series_agree() {
        let series = Series::generate(Pattern::LeakNoisyTrough, 5, 900);
        let lazy: Vec<Observation> = Generator::new(Pattern::LeakNoisyTrough, 5, 900).collect();
        assert_eq!(series.observations, lazy);
    }

    #[test]
    fn names_round_trip_and_labels_match() {
        for pattern in Pattern::ALL {
            assert_eq!(Pattern::from_name(pattern.name()), Some(pattern));
            let series = Series::generate(pattern, 1, 100);
            assert_eq!(series.truth.label, pattern.label());
            assert_eq!(
                series.truth.leak_start_s.is_some(),
                pattern.label() == Label::Leak
            );
        }
        assert_eq!(Pattern::from_name("nope"), None);
    }

    #[test]
    fn times_are_one_hertz_from_zero() {
        let series = Series::generate(Pattern::Flat, 3, DEFAULT_SAMPLES);
        assert_eq!(series.observations.len(), DEFAULT_SAMPLES as usize);
        for (i, observation) in series.observations.iter().enumerate() {
            assert_eq!(observation.t_s, i as f64);
        }
    }

    #[test]
    fn leak_parameters_stay_in_range() {
        for seed in 0..200 {
            for pattern in [
                Pattern::LeakLinear,
                Pattern::LeakStepwise,
                Pattern::LeakNoisyTrough,
            ] {
                let generator = Generator::new(pattern, seed, DEFAULT_SAMPLES);
                let truth = generator.truth();
                let rate_mb_min = truth.leak_rate_bytes_per_s.unwrap_or(0.0) * 60.0 / MB;
                assert!((0.5..=20.0).contains(&rate_mb_min), "{rate_mb_min}");
                let start = truth.leak_start_s.unwrap_or(-1.0);
                assert!((0.0..=600.0).contains(&start), "{start}");
            }
        }
    }

    #[test]
    fn values_stay_in_range_and_never_negative() {
        // Base ≤ 300 MB; the largest additions: a 2 GB step, spikes of up to 1 GB that may
        // overlap, a 300 MB sawtooth, a 500 MB warm-up, a 20 MB/min leak over 40 min.
        let ceiling = 300.0 * MB + 2048.0 * MB + 4.0 * 1024.0 * MB + 800.0 * MB;
        for pattern in Pattern::ALL {
            for seed in 0..20 {
                let series = Series::generate(pattern, seed, DEFAULT_SAMPLES);
                for observation in &series.observations {
                    let value = observation.rss_bytes as f64;
                    assert!(
                        value >= 25.0 * MB,
                        "{} seed {seed}: {value}",
                        pattern.name()
                    );
                    assert!(value <= ceiling, "{} seed {seed}: {value}", pattern.name());
                }
                assert!(series.healthy_peak_bytes > 0);
                assert!(series.budget_bytes() > series.healthy_peak_bytes);
            }
        }
    }

    #[test]
    fn leaks_grow_and_healthy_warmups_level_off() {
        for seed in 0..10 {
            let leak = Series::generate(Pattern::LeakLinear, seed, DEFAULT_SAMPLES);
            let rate = leak.truth.leak_rate_bytes_per_s.unwrap_or(0.0);
            let min_of =
                |s: &[Observation]| s.iter().map(|o| o.rss_bytes).min().unwrap_or(0) as f64;
            let early = min_of(&leak.observations[600..900]);
            let late = min_of(&leak.observations[2100..2400]);
            // The floor grows by about rate × 1500 s; noise and the trough move it a little.
            assert!(late - early > 0.8 * rate * 1500.0 - 3.0 * MB, "seed {seed}");

            let warmup = Series::generate(Pattern::WarmupExp, seed, DEFAULT_SAMPLES);
            let early = min_of(&warmup.observations[1200..1500]);
            let late = min_of(&warmup.observations[2100..2400]);
            assert!(late - early < 0.01 * 500.0 * MB + 4.0 * MB, "seed {seed}");
        }
    }
}
