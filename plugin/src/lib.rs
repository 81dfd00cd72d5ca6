//! MRT Live: Magenta RealTime as a CLAP/VST3 instrument.
//!
//! This is the host-facing shell of the instrument. It declares the plugin's identity, audio ports
//! (stereo out, optional stereo sidechain in), MIDI input and parameters. The generation worker
//! (the `mrt-engine` crate, running on its own thread) will later feed rendered audio into this
//! shell through a lock-free queue; until then [`MrtLive::process`] outputs silence.
//!
//! Real-time rules for `process()`: no allocation, no locks, no logging, no I/O.

use std::num::NonZeroU32;
use std::sync::Arc;

use nice_plug::prelude::*;

/// Lowest value of the output gain parameter, in decibels.
pub const GAIN_MIN_DB: f32 = -60.0;
/// Highest value of the output gain parameter, in decibels.
pub const GAIN_MAX_DB: f32 = 12.0;
/// Time the output gain smoother takes to reach a new value, in milliseconds.
pub const GAIN_SMOOTHING_MS: f32 = 50.0;

/// Port names shared by both audio layouts.
const PORT_NAMES: PortNames = PortNames {
    layout: None,
    main_input: None,
    main_output: Some("Output"),
    aux_inputs: &["Sidechain"],
    aux_outputs: &[],
};

/// The instrument. Created by the host through [`Default`]; keep construction cheap.
pub struct MrtLive {
    params: Arc<MrtLiveParams>,
}

/// Parameters exposed to the host.
#[derive(Params)]
pub struct MrtLiveParams {
    /// Output gain, stored as a linear voltage gain and displayed in decibels.
    #[id = "gain"]
    pub gain: FloatParam,
}

impl Default for MrtLiveParams {
    fn default() -> Self {
        Self {
            gain: FloatParam::new(
                "Output Gain",
                util::db_to_gain(0.0),
                FloatRange::gain_range(GAIN_MIN_DB, GAIN_MAX_DB),
            )
            // The range never reaches zero, so logarithmic smoothing is safe.
            .with_smoother(SmoothingStyle::Logarithmic(GAIN_SMOOTHING_MS))
            .with_unit(" dB")
            .with_value_to_string(formatters::v2s_f32_gain_to_db(2))
            .with_string_to_value(formatters::s2v_f32_gain_to_db()),
        }
    }
}

impl Default for MrtLive {
    fn default() -> Self {
        Self {
            params: Arc::new(MrtLiveParams::default()),
        }
    }
}

impl MrtLive {
    /// The plugin's parameters, typed (the host-facing [`Plugin::params`] is type-erased).
    pub fn mrt_params(&self) -> &Arc<MrtLiveParams> {
        &self.params
    }
}

impl Plugin for MrtLive {
    const NAME: &'static str = "MRT Live";
    const VENDOR: &'static str = "MRT Live";
    const URL: &'static str = "";
    const EMAIL: &'static str = "";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    // The first layout is the default: stereo out plus an optional stereo sidechain that can later
    // steer generation. The second is the same without the sidechain, for hosts that insist on
    // plain instrument layouts.
    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[
        AudioIOLayout {
            main_input_channels: None,
            main_output_channels: NonZeroU32::new(2),
            aux_input_ports: &[new_nonzero_u32(2)],
            aux_output_ports: &[],
            names: PORT_NAMES,
        },
        AudioIOLayout {
            main_input_channels: None,
            main_output_channels: NonZeroU32::new(2),
            aux_input_ports: &[],
            aux_output_ports: &[],
            names: PORT_NAMES,
        },
    ];

    // Notes are accepted so hosts route MIDI to the instrument; nothing consumes them yet.
    const MIDI_INPUT: MidiConfig = MidiConfig::Basic;
    const MIDI_OUTPUT: MidiConfig = MidiConfig::None;
    const SAMPLE_ACCURATE_AUTOMATION: bool = false;

    type Editor = ();
    type SysExMessage = ();
    type BackgroundTask = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn activate(
        &mut self,
        _audio_io_layout: &AudioIOLayout,
        _buffer_config: &BufferConfig,
        _context: &mut impl ActivateContext<Self>,
    ) -> bool {
        true
    }

    fn reset(&mut self) {}

    fn process(
        &mut self,
        buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        // Drain incoming notes; they will drive the generation worker later.
        while context.next_event().is_some() {}

        let num_samples = buffer.samples();
        for channel in buffer.as_slice() {
            channel.fill(0.0);
        }

        // Nothing to scale yet, but keep the gain smoother in step with the host's timeline so it
        // has settled on the right value once generated audio arrives.
        if let Ok(steps @ 1..) = u32::try_from(num_samples) {
            self.params.gain.smoothed.next_step(steps);
        }

        ProcessStatus::Normal
    }
}

impl ClapPlugin for MrtLive {
    const CLAP_ID: &'static str = "org.mrtlive.mrt-live";
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("Magenta RealTime live music generation as an instrument");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[
        ClapFeature::Instrument,
        ClapFeature::Synthesizer,
        ClapFeature::Stereo,
    ];
}

impl Vst3Plugin for MrtLive {
    // Fixed forever: hosts use it to find the plugin in saved projects.
    const VST3_CLASS_ID: [u8; 16] = *b"MrtLiveMagentaRT";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] = &[
        Vst3SubCategory::Instrument,
        Vst3SubCategory::Synth,
        Vst3SubCategory::Stereo,
    ];
}

nice_export_clap!(MrtLive);
nice_export_vst3!(MrtLive);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_stereo_instrument_with_optional_sidechain() {
        let [with_sc, without_sc] = MrtLive::AUDIO_IO_LAYOUTS else {
            panic!("expected exactly two layouts");
        };
        for layout in [with_sc, without_sc] {
            assert_eq!(layout.main_input_channels, None);
            assert_eq!(layout.main_output_channels, NonZeroU32::new(2));
            assert!(layout.aux_output_ports.is_empty());
        }
        assert_eq!(with_sc.aux_input_ports, &[new_nonzero_u32(2)]);
        assert_eq!(with_sc.aux_input_name(0).as_deref(), Some("Sidechain"));
        assert!(without_sc.aux_input_ports.is_empty());
    }

    #[test]
    fn gain_param_defaults_to_unity_and_formats_in_db() {
        let plugin = MrtLive::default();
        let gain = &plugin.mrt_params().gain;
        assert_eq!(gain.value(), 1.0);
        assert_eq!(gain.to_string(), "0.00 dB");
        let range = gain.range();
        assert!((util::gain_to_db(range.unnormalize(0.0)) - GAIN_MIN_DB).abs() < 1e-3);
        assert!((util::gain_to_db(range.unnormalize(1.0)) - GAIN_MAX_DB).abs() < 1e-3);
        assert!(plugin
            .params()
            .param_map()
            .iter()
            .any(|(id, _, _)| id == "gain"));
    }
}
