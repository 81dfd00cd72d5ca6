//! Streaming fixed-ratio resampling for the worker (never on the audio thread): a rubato
//! `FftFixedInOut` fed from an input accumulator, so a stream cut into chunks of any length
//! resamples exactly as if it were one piece (chunk seams stay continuous).

use rubato::{FftFixedInOut, Resampler};

/// Resamples planar audio from `from` Hz to `to` Hz across calls. Same rates = a plain copy.
pub struct StreamResampler {
    inner: Option<FftFixedInOut<f32>>,
    channels: usize,
    /// Input waiting for a full resampler block, per channel.
    pending: Vec<Vec<f32>>,
    scratch_out: Vec<Vec<f32>>,
}

impl StreamResampler {
    /// `block` is the preferred input block in frames (rounded up to what the ratio needs).
    pub fn new(from: u32, to: u32, channels: usize, block: usize) -> Result<Self, String> {
        if from == 0 || to == 0 {
            return Err(format!("cannot resample {from} Hz to {to} Hz"));
        }
        let inner = if from == to {
            None
        } else {
            Some(
                FftFixedInOut::new(from as usize, to as usize, block, channels)
                    .map_err(|e| format!("resampler {from} Hz → {to} Hz: {e}"))?,
            )
        };
        let out_max = inner.as_ref().map_or(0, |r| r.output_frames_max());
        Ok(Self { inner, channels, pending: vec![Vec::new(); channels], scratch_out: vec![vec![0.0; out_max]; channels] })
    }

    /// Feeds `input` (one slice per channel, equal lengths) and appends every output frame that
    /// is complete to `output` (one vector per channel).
    pub fn process(&mut self, input: &[&[f32]], output: &mut [Vec<f32>]) -> Result<(), String> {
        assert_eq!(input.len(), self.channels, "channel count");
        assert_eq!(output.len(), self.channels, "channel count");
        let Some(r) = self.inner.as_mut() else {
            for (o, i) in output.iter_mut().zip(input) {
                o.extend_from_slice(i);
            }
            return Ok(());
        };
        for (p, i) in self.pending.iter_mut().zip(input) {
            p.extend_from_slice(i);
        }
        let need = r.input_frames_next();
        let mut start = 0;
        while self.pending[0].len() - start >= need {
            let ins: Vec<&[f32]> = self.pending.iter().map(|p| &p[start..start + need]).collect();
            let (used, made) = r.process_into_buffer(&ins, &mut self.scratch_out, None).map_err(|e| format!("resampling: {e}"))?;
            for (o, s) in output.iter_mut().zip(&self.scratch_out) {
                o.extend_from_slice(&s[..made]);
            }
            start += used;
        }
        for p in &mut self.pending {
            p.drain(..start);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(n: usize, rate: f32, hz: f32) -> Vec<f32> {
        (0..n).map(|i| (std::f32::consts::TAU * hz * i as f32 / rate).sin() * 0.5).collect()
    }

    #[test]
    fn chunked_equals_whole_and_lengths_follow_the_ratio() {
        for to in [44_100u32, 96_000, 88_200, 22_050] {
            let x = sine(96_000 * 2, 48_000.0, 440.0);
            let mut whole = StreamResampler::new(48_000, to, 1, 960).unwrap();
            let mut a = vec![Vec::new()];
            whole.process(&[&x], &mut a).unwrap();
            let mut chunked = StreamResampler::new(48_000, to, 1, 960).unwrap();
            let mut b = vec![Vec::new()];
            for part in x.chunks(96_000) {
                chunked.process(&[part], &mut b).unwrap();
            }
            assert_eq!(a, b, "{to} Hz: chunked output differs from whole");
            let expected = x.len() as u64 * u64::from(to) / 48_000;
            assert_eq!(a[0].len() as u64, expected, "{to} Hz: output length");
        }
    }

    #[test]
    fn same_rate_is_a_copy() {
        let x = sine(1000, 48_000.0, 100.0);
        let mut r = StreamResampler::new(48_000, 48_000, 1, 960).unwrap();
        let mut out = vec![Vec::new()];
        r.process(&[&x], &mut out).unwrap();
        assert_eq!(out[0], x);
    }
}
