//! The streaming state of v1 `MagentaRTState`: the last 10 s of generated codes (all 16 levels,
//! −1 = empty), the 40 ms crossfade tail of the previous chunk, and the chunk index that keys the
//! sampler. It serialises with serde, so a session is saved and resumed bit-exactly (f32 values
//! round-trip exactly through serde_json's shortest representation).

use serde::{Deserialize, Serialize};

/// Bumped when the layout changes; older states are migrated or rejected with a message.
pub const STATE_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamState {
    pub version: u32,
    /// `context_frames × levels` raw codes, row-major, oldest frame first; −1 = empty.
    pub context_codes: Vec<i32>,
    pub context_frames: usize,
    pub levels: usize,
    /// The previous chunk's decoded tail, channel-first `[channels][crossfade_samples]`.
    pub crossfade_tail: Vec<f32>,
    pub channels: usize,
    pub chunk_index: u64,
    /// Buffers this stream's chunks reuse (never saved: a loaded state starts without them).
    #[serde(skip)]
    pub scratch: Scratch,
}

/// The per-stream buffers of the host encoder and the host codec decoder. They travel with the
/// state, not with the shared model, so two streams on one model never wait for each other. A
/// clone starts empty and every scratch compares equal: they hold no part of the stream's meaning.
#[derive(Default)]
pub struct Scratch {
    pub lm: crate::v1::lm::LmScratch,
    pub codec: crate::codec::DecodeScratch,
}

impl Clone for Scratch {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for Scratch {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scratch")
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StateError {
    #[error("stream state version {found} is newer than this build understands ({supported})")]
    Version { found: u32, supported: u32 },
    #[error("stream state is inconsistent: {0}")]
    Shape(String),
}

impl StreamState {
    /// The state before the first chunk (v1 `init_state`): empty context, silent tail, index 0.
    pub fn new(context_frames: usize, levels: usize, channels: usize, crossfade_samples: usize) -> Self {
        Self {
            version: STATE_VERSION,
            context_codes: vec![-1; context_frames * levels],
            context_frames,
            levels,
            crossfade_tail: vec![0.0; channels * crossfade_samples],
            channels,
            chunk_index: 0,
            scratch: Scratch::default(),
        }
    }

    pub fn crossfade_samples(&self) -> usize {
        self.crossfade_tail.len() / self.channels.max(1)
    }

    /// The newest `n` frames of context (`n × levels`).
    pub fn last_frames(&self, n: usize) -> &[i32] {
        &self.context_codes[(self.context_frames - n) * self.levels..]
    }

    /// Shifts `frames × levels` new codes into the context (v1 `MagentaRTState.update`).
    pub fn push_frames(&mut self, codes: &[i32]) {
        let n = codes.len().min(self.context_codes.len());
        self.context_codes.drain(..n);
        self.context_codes.extend_from_slice(&codes[codes.len() - n..]);
    }

    /// Checks a deserialised state against the model it will drive.
    pub fn validate(&self, context_frames: usize, levels: usize, channels: usize, crossfade_samples: usize) -> Result<(), StateError> {
        if self.version > STATE_VERSION {
            return Err(StateError::Version { found: self.version, supported: STATE_VERSION });
        }
        let shape = |what: &str, got: usize, want: usize| -> Result<(), StateError> {
            if got == want {
                Ok(())
            } else {
                Err(StateError::Shape(format!("{what} is {got}, the model needs {want}")))
            }
        };
        shape("context frames", self.context_frames, context_frames)?;
        shape("levels", self.levels, levels)?;
        shape("context length", self.context_codes.len(), context_frames * levels)?;
        shape("channels", self.channels, channels)?;
        shape("crossfade tail length", self.crossfade_tail.len(), channels * crossfade_samples)?;
        if let Some(bad) = self.context_codes.iter().find(|&&c| c < -1) {
            return Err(StateError::Shape(format!("context code {bad} is below −1")));
        }
        if let Some(i) = self.crossfade_tail.iter().position(|v| !v.is_finite()) {
            return Err(StateError::Shape(format!("crossfade tail sample {i} is not finite")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_is_a_sliding_window_of_the_newest_frames() {
        let mut s = StreamState::new(3, 2, 2, 4);
        s.push_frames(&[1, 2, 3, 4]);
        assert_eq!(s.context_codes, vec![-1, -1, 1, 2, 3, 4]);
        s.push_frames(&[5, 6, 7, 8]);
        assert_eq!(s.context_codes, vec![3, 4, 5, 6, 7, 8]);
        assert_eq!(s.last_frames(1), &[7, 8]);
    }

    #[test]
    fn state_round_trips_bit_exactly_through_json() {
        let mut s = StreamState::new(250, 16, 2, 1920);
        s.crossfade_tail.iter_mut().enumerate().for_each(|(i, v)| *v = (i as f32 * 0.7311).sin() * 1e-3 + 1.0 / 3.0);
        s.push_frames(&(0..800).map(|i| i % 1024).collect::<Vec<_>>());
        s.chunk_index = 7;
        let text = serde_json::to_string(&s).unwrap();
        let back: StreamState = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        assert!(back.crossfade_tail.iter().zip(&s.crossfade_tail).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(back.validate(250, 16, 2, 1920).is_ok());
    }

    #[test]
    fn foreign_or_newer_states_are_rejected() {
        let s = StreamState::new(250, 16, 2, 1920);
        assert!(matches!(s.validate(100, 16, 2, 1920), Err(StateError::Shape(_))));
        let newer = StreamState { version: STATE_VERSION + 1, ..s.clone() };
        assert!(matches!(newer.validate(250, 16, 2, 1920), Err(StateError::Version { .. })));
        let mut nan = s;
        nan.crossfade_tail[3] = f32::NAN;
        assert!(nan.validate(250, 16, 2, 1920).is_err());
    }
}
