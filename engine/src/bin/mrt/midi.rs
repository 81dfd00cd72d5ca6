//! Standard MIDI files → timed note events for MRT2's piano roll (`mrt generate --midi`).
//!
//! Ticks become seconds through the file's tempo map: metrical files (ticks per beat) follow
//! every Set Tempo event (µs per beat, 500000 = 120 bpm until the first), whichever track holds
//! it, as sequencers read format 1; SMPTE files have a fixed tick length (1 / (fps · ticks per
//! frame)). All tracks play at once (format 0 and 1; a format 2 file's tracks are laid over each
//! other too). A note-on with velocity 0 is a note-off. Channel 10 (General MIDI drums) is left
//! out: its keys name drums, not pitches.

use std::path::Path;

use anyhow::{bail, Context, Result};
use midly::{MetaMessage, MidiMessage, Smf, Timing, TrackEventKind};
use mrt::mrt2::notes::NoteEvent;

/// General MIDI's drum channel (10, zero-based 9).
const DRUM_CHANNEL: u8 = 9;

/// The note events of the MIDI file at `path`, in seconds from its start.
pub fn read_events(path: &Path) -> Result<Vec<NoteEvent>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read the MIDI file {}", path.display()))?;
    events_from_bytes(&bytes).with_context(|| format!("{} is not a usable standard MIDI file", path.display()))
}

pub fn events_from_bytes(bytes: &[u8]) -> Result<Vec<NoteEvent>> {
    let smf = Smf::parse(bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    // (tick, track, index) keeps file order on ties; tempo changes are ordered with the notes.
    enum Ev {
        Tempo(u32),
        Note { pitch: u8, on: bool },
    }
    let mut timeline: Vec<(u64, usize, usize, Ev)> = Vec::new();
    for (ti, track) in smf.tracks.iter().enumerate() {
        let mut tick = 0u64;
        for (i, e) in track.iter().enumerate() {
            tick += u64::from(e.delta.as_int());
            match e.kind {
                TrackEventKind::Meta(MetaMessage::Tempo(t)) => timeline.push((tick, ti, i, Ev::Tempo(t.as_int()))),
                TrackEventKind::Midi { channel, message } if channel.as_int() != DRUM_CHANNEL => {
                    let note = match message {
                        MidiMessage::NoteOn { key, vel } => Some((key.as_int(), vel.as_int() > 0)),
                        MidiMessage::NoteOff { key, .. } => Some((key.as_int(), false)),
                        _ => None,
                    };
                    if let Some((pitch, on)) = note {
                        timeline.push((tick, ti, i, Ev::Note { pitch, on }));
                    }
                }
                _ => {}
            }
        }
    }
    // Tempo changes first among events of one tick (they time everything at and after it).
    timeline.sort_by_key(|(tick, track, i, e)| (*tick, !matches!(e, Ev::Tempo(_)), *track, *i));
    let seconds_per_tick = |us_per_beat: u32| -> Result<f64> {
        Ok(match smf.header.timing {
            Timing::Metrical(tpb) => {
                let tpb = tpb.as_int();
                if tpb == 0 {
                    bail!("0 ticks per beat in the header");
                }
                f64::from(us_per_beat) * 1e-6 / f64::from(tpb)
            }
            Timing::Timecode(fps, sub) => {
                if sub == 0 {
                    bail!("0 ticks per SMPTE frame in the header");
                }
                1.0 / (f64::from(fps.as_f32()) * f64::from(sub))
            }
        })
    };
    let mut per_tick = seconds_per_tick(500_000)?;
    let (mut last_tick, mut seconds) = (0u64, 0f64);
    let mut out = Vec::new();
    for (tick, _, _, e) in timeline {
        seconds += (tick - last_tick) as f64 * per_tick;
        last_tick = tick;
        match e {
            Ev::Tempo(us) => {
                if matches!(smf.header.timing, Timing::Metrical(_)) {
                    per_tick = seconds_per_tick(us)?;
                }
            }
            Ev::Note { pitch, on } => out.push(NoteEvent { seconds, pitch, on }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A format-1 file: track 0 sets 120 bpm then 60 bpm at beat 2; track 1 plays C4 for a beat
    /// from beat 1, E4 from beat 3 (velocity-0 note-on as its off), and a drum hit.
    fn two_tempo_song() -> Vec<u8> {
        fn vlq(mut v: u32, out: &mut Vec<u8>) {
            let mut bytes = vec![(v & 0x7f) as u8];
            v >>= 7;
            while v > 0 {
                bytes.push(0x80 | (v & 0x7f) as u8);
                v >>= 7;
            }
            out.extend(bytes.iter().rev());
        }
        fn track(events: &[(u32, &[u8])]) -> Vec<u8> {
            let mut body = Vec::new();
            for (delta, e) in events {
                vlq(*delta, &mut body);
                body.extend_from_slice(e);
            }
            body.extend_from_slice(&[0, 0xff, 0x2f, 0]);
            let mut t = b"MTrk".to_vec();
            t.extend_from_slice(&(body.len() as u32).to_be_bytes());
            t.extend(body);
            t
        }
        let mut f = b"MThd".to_vec();
        f.extend_from_slice(&[0, 0, 0, 6, 0, 1, 0, 2, 0, 96]); // format 1, 2 tracks, 96 ticks/beat
        f.extend(track(&[(0, &[0xff, 0x51, 3, 0x07, 0xa1, 0x20]), (192, &[0xff, 0x51, 3, 0x0f, 0x42, 0x40])]));
        f.extend(track(&[
            (96, &[0x90, 60, 100]),
            (0, &[0x99, 36, 100]),
            (96, &[0x80, 60, 0]),
            (96, &[0x90, 64, 90]),
            (96, &[0x90, 64, 0]),
        ]));
        f
    }

    #[test]
    fn ticks_become_seconds_through_the_tempo_map() {
        let ev = events_from_bytes(&two_tempo_song()).unwrap();
        let got: Vec<(f64, u8, bool)> = ev.iter().map(|e| ((e.seconds * 1e6).round() / 1e6, e.pitch, e.on)).collect();
        // Beats 1 and 2 at 120 bpm (0.5 s each), then 1 s per beat.
        assert_eq!(got, vec![(0.5, 60, true), (1.0, 60, false), (2.0, 64, true), (3.0, 64, false)]);
    }

    #[test]
    fn a_file_that_is_not_midi_is_an_error() {
        assert!(events_from_bytes(b"RIFF....WAVEfmt ").is_err());
    }
}
