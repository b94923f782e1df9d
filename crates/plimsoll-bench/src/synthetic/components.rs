//! The building blocks that synthetic series are summed from: a GC sawtooth, uniform noise and
//! a train of transient spikes. Each is advanced one second at a time by the generator.

use rand::Rng;
use rand_pcg::Pcg64Mcg;

/// A value drawn log-uniformly from `[low, high]`: every decade equally likely.
pub(crate) fn log_uniform(rng: &mut Pcg64Mcg, low: f64, high: f64) -> f64 {
    rng.random_range(low.ln()..=high.ln())
        .exp()
        .clamp(low, high)
}

/// A GC sawtooth: rises linearly from 0 to `amplitude` within each period, then drops back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sawtooth {
    /// Height of a tooth, bytes.
    pub(crate) amplitude: f64,
    /// Length of a tooth, seconds.
    pub(crate) period_s: f64,
    /// Offset of the first tooth, seconds, in `[0, period_s)`.
    pub(crate) phase_s: f64,
}

impl Sawtooth {
    /// The tooth's height at `t_s`, bytes.
    pub(crate) fn at(&self, t_s: f64) -> f64 {
        if self.amplitude <= 0.0 {
            return 0.0;
        }
        let position = (t_s + self.phase_s) % self.period_s;
        self.amplitude * position / self.period_s
    }

    /// Index of the tooth `t_s` lies in; changes exactly when the sawtooth drops.
    pub(crate) fn cycle(&self, t_s: f64) -> u64 {
        ((t_s + self.phase_s) / self.period_s).floor() as u64
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "saw={:.0}MB/{:.0}s",
            self.amplitude / super::MB,
            self.period_s
        )
    }
}

/// Transient allocations: each second one starts with probability `probability_per_s`, with a
/// log-uniform height and a uniform whole-second duration; overlapping spikes add up.
#[derive(Debug, Clone)]
pub(crate) struct Spikes {
    pub(crate) probability_per_s: f64,
    /// Height range, bytes.
    pub(crate) height: (f64, f64),
    /// Duration range, whole seconds.
    pub(crate) duration_s: (u32, u32),
    /// Spikes still held: (first second after the spike, height in bytes).
    active: Vec<(u64, f64)>,
}

impl Spikes {
    pub(crate) fn new(probability_per_s: f64, height: (f64, f64), duration_s: (u32, u32)) -> Self {
        Spikes {
            probability_per_s,
            height,
            duration_s,
            active: Vec::new(),
        }
    }

    /// The sum of the spikes held at second `t`, bytes; may start a new one.
    pub(crate) fn step(&mut self, rng: &mut Pcg64Mcg, t: u64) -> f64 {
        self.active.retain(|&(end, _)| end > t);
        if rng.random_bool(self.probability_per_s) {
            let height = log_uniform(rng, self.height.0, self.height.1);
            let duration = rng.random_range(self.duration_s.0..=self.duration_s.1);
            self.active.push((t + u64::from(duration), height));
        }
        self.active.iter().map(|&(_, height)| height).sum()
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "spikes={:.2}%/s {:.0}-{:.0}MB {}-{}s",
            self.probability_per_s * 100.0,
            self.height.0 / super::MB,
            self.height.1 / super::MB,
            self.duration_s.0,
            self.duration_s.1
        )
    }
}

/// Uniform noise in `[-amplitude, amplitude]`, bytes.
pub(crate) fn noise(rng: &mut Pcg64Mcg, amplitude: f64) -> f64 {
    if amplitude <= 0.0 {
        return 0.0;
    }
    rng.random_range(-amplitude..=amplitude)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sawtooth_rises_then_drops_to_zero() {
        let saw = Sawtooth {
            amplitude: 100.0,
            period_s: 10.0,
            phase_s: 0.0,
        };
        assert_eq!(saw.at(0.0), 0.0);
        assert_eq!(saw.at(5.0), 50.0);
        assert_eq!(saw.at(10.0), 0.0);
        assert_eq!(saw.cycle(9.0), 0);
        assert_eq!(saw.cycle(10.0), 1);
    }

    #[test]
    fn spikes_end_after_their_duration() {
        let mut rng = Pcg64Mcg::seed_from_u64(1);
        let mut spikes = Spikes::new(1.0, (10.0, 10.0), (2, 2));
        assert!((spikes.step(&mut rng, 0) - 10.0).abs() < 1e-9);
        // Second 1: the first spike is still held, a second one starts.
        assert!((spikes.step(&mut rng, 1) - 20.0).abs() < 1e-9);
        // Second 2: the first has ended.
        assert!((spikes.step(&mut rng, 2) - 20.0).abs() < 1e-9);
    }

    #[test]
    fn log_uniform_stays_in_range() {
        let mut rng = Pcg64Mcg::seed_from_u64(7);
        for _ in 0..1000 {
            let value = log_uniform(&mut rng, 0.5, 20.0);
            assert!((0.5..=20.0 + 1e-9).contains(&value));
        }
    }
}
