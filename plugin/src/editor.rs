//! The editor (nice-plug-egui): style slots, sidechain, sampling, model settings and status.
//!
//! It runs on the host's GUI thread and reads only what the worker and the audio thread publish
//! in [`Shared`] (atomics, and strings behind mutexes the audio thread never takes), so it never
//! blocks the audio thread. Text prompts are committed to the persisted state when a field loses
//! focus (Enter or a click elsewhere): the worker embeds each committed prompt once.
//!
//! A model download started here runs on its own thread ([`start_download`]), driving the
//! engine's fetch; when it ends the worker looks for the model again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use egui::{Color32, RichText};
use nice_plug::prelude::*;
use nice_plug::context::gui::GuiContext;
use nice_plug_egui::widgets::ParamSlider;
use nice_plug_egui::{EguiEditor, EguiEditorState, EguiNiceSettings, NiceEguiApp, RepaintNotifier};

use crate::params::{MrtLiveParams, Settings, SLOTS};
use crate::shared::{Shared, Status};

/// The editor's logical size.
pub const SIZE: (u32, u32) = (760, 640);
/// Redraw rate for the live read-outs (meter, status, counters).
const REPAINT: Duration = Duration::from_millis(33);

/// The editor's state and size, kept for the plugin's lifetime (the window may open many times).
pub fn default_state() -> Arc<EguiEditorState> {
    EguiEditorState::from_size(nice_plug::editor::dpi::LogicalSize::new(SIZE.0 as f32, SIZE.1 as f32), 1.0)
}

/// Builds the editor for `MrtLive::editor`.
pub fn create(params: Arc<MrtLiveParams>, shared: Arc<Shared>, state: Arc<EguiEditorState>) -> Option<EguiEditor<EditorApp>> {
    let repaint = RepaintNotifier::new();
    let settings = EguiNiceSettings::new().with_tile("MRT Live").with_repaint_poll_interval(REPAINT);
    let app = EditorApp::new(params, shared, repaint.clone());
    nice_plug_egui::create_egui_editor(state, repaint, settings, app)
}

/// The egui app behind the editor window.
pub struct EditorApp {
    params: Arc<MrtLiveParams>,
    shared: Arc<Shared>,
    repaint: RepaintNotifier,
    gui: Option<GuiContext>,
    /// Edit buffers of the slot prompts and model settings (committed on focus loss / Apply).
    prompts: Vec<String>,
    family: mrt::stream::Family,
    model_dir: String,
    size: String,
    device: String,
    lm_weights: mrt::v1::lm::WeightPrecision,
    depth_logits: mrt::v1::lm::DepthLogits,
    restores_seen: Option<u64>,
}

impl EditorApp {
    fn new(params: Arc<MrtLiveParams>, shared: Arc<Shared>, repaint: RepaintNotifier) -> Self {
        Self {
            params,
            shared,
            repaint,
            gui: None,
            prompts: vec![String::new(); SLOTS],
            family: mrt::stream::Family::V1,
            model_dir: String::new(),
            size: String::new(),
            device: String::new(),
            lm_weights: Default::default(),
            depth_logits: Default::default(),
            restores_seen: None,
        }
    }

    /// Loads the edit buffers from the persisted state (at open, and after a host restore).
    fn sync_from_state(&mut self) {
        let restores = self.params.saved.restores();
        if self.restores_seen == Some(restores) {
            return;
        }
        self.restores_seen = Some(restores);
        let saved = self.params.saved.get();
        self.prompts = saved.prompts.clone();
        self.prompts.resize(SLOTS, String::new());
        self.family = saved.settings.family;
        self.model_dir = saved.settings.model_dir.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        self.size = saved.settings.size.clone();
        self.device = saved.settings.device.clone().unwrap_or_default();
        self.lm_weights = saved.settings.lm_weights;
        self.depth_logits = saved.settings.depth_logits;
    }

    /// The settings the fields describe.
    fn edited_settings(&self) -> Settings {
        let dir = self.model_dir.trim();
        let device = self.device.trim();
        Settings {
            family: self.family,
            model_dir: (!dir.is_empty()).then(|| dir.into()),
            size: match self.size.trim() {
                "" => crate::params::default_size(self.family).into(),
                s => s.to_string(),
            },
            device: (!device.is_empty()).then(|| device.to_string()),
            lm_weights: self.lm_weights,
            depth_logits: self.depth_logits,
        }
    }

    fn status_ui(&mut self, ui: &mut egui::Ui) {
        let status = self.shared.status();
        let colour = match status {
            Status::Ready => Color32::from_rgb(90, 200, 120),
            Status::Loading | Status::Idle => Color32::from_rgb(230, 190, 80),
            Status::NotInstalled => Color32::from_rgb(120, 170, 240),
            Status::Error => Color32::from_rgb(240, 90, 90),
        };
        ui.horizontal(|ui| {
            let (rect, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
            ui.painter().circle_filled(rect.center(), 5.0, colour);
            ui.label(RichText::new(status.label()).strong().color(colour));
            let device = crate::shared::lock(&self.shared.device).clone();
            if !device.is_empty() {
                ui.separator();
                ui.label(format!("device: {device}"));
            }
        });
        let message = self.shared.message();
        if !message.is_empty() {
            egui::ScrollArea::vertical().id_salt("status-message").max_height(72.0).show(ui, |ui| {
                ui.add(egui::Label::new(RichText::new(message).small()).wrap());
            });
        }
        if status == Status::NotInstalled || self.shared.download.active.load(Ordering::Acquire) {
            self.download_ui(ui);
        }

        let spc = self.shared.seconds_per_chunk();
        let ahead = self.shared.buffer_ahead();
        ui.horizontal_wrapped(|ui| {
            if spc > 0.0 {
                let block = self.shared.block_seconds();
                let rtf = block / spc;
                let text = if block < 0.5 {
                    // MRT2: milliseconds per 40 ms frame.
                    RichText::new(format!("{:.1} ms per {:.0} ms frame ({rtf:.2}× real time)", spc * 1e3, block * 1e3))
                } else {
                    RichText::new(format!("{spc:.2} s per {block} s block ({rtf:.2}× real time)"))
                };
                ui.label(if rtf < 1.0 { text.color(Color32::from_rgb(240, 140, 90)) } else { text });
            } else {
                ui.label("no chunk generated yet");
            }
            ui.separator();
            if self.shared.mrt2.load(Ordering::Acquire) {
                let frames = self.params.frames_ahead.value();
                ui.label(format!("buffer: {frames} frames, latency {} ms", frames * 40));
            } else {
                ui.label(format!("buffer ahead: {ahead:.1} s"));
            }
            ui.separator();
            let underruns = self.shared.underruns.load(Ordering::Relaxed);
            let text = RichText::new(format!("underruns: {underruns}"));
            ui.label(if underruns > 0 { text.color(Color32::from_rgb(240, 140, 90)) } else { text });
        });
        let hint = if self.shared.mrt2.load(Ordering::Acquire) {
            format!(
                "Notes, style and sampling changes steer the next generated frame: heard in about {} ms.",
                (self.params.frames_ahead.value() + 1) * 40
            )
        } else {
            format!("Style and sampling changes apply from the next generated chunk: heard in about {:.1} s.", ahead.max(0.0))
        };
        ui.label(RichText::new(hint).small().weak());
    }

    fn download_ui(&mut self, ui: &mut egui::Ui) {
        let dl = &self.shared.download;
        if dl.active.load(Ordering::Acquire) {
            let total = dl.total_bytes.load(Ordering::Relaxed);
            let done = dl.done_bytes.load(Ordering::Relaxed);
            let text = if total > 0 {
                format!("{:.1} / {:.1} MB", done as f64 / 1e6, total as f64 / 1e6)
            } else {
                "starting…".into()
            };
            ui.add(egui::ProgressBar::new(dl.fraction()).text(text));
            ui.label(RichText::new(dl.line()).small());
        } else {
            let settings = self.edited_settings();
            let target = match &settings.model_dir {
                Some(d) => format!("into {}", d.display()),
                None => "into the Hugging Face cache".into(),
            };
            ui.horizontal(|ui| {
                if ui.button(format!("Download the {} model", settings.size)).clicked() {
                    start_download(self.shared.clone(), settings.clone());
                }
                ui.label(RichText::new(target).small().weak());
            });
            let line = dl.line();
            if !line.is_empty() {
                let text = RichText::new(line).small();
                ui.label(if dl.failed.load(Ordering::Relaxed) { text.color(Color32::from_rgb(240, 90, 90)) } else { text });
            }
        }
    }

    fn slots_ui(&mut self, ui: &mut egui::Ui, setter: &ParamSetter) {
        egui::Grid::new("slots").num_columns(4).spacing([8.0, 4.0]).show(ui, |ui| {
            for i in 0..SLOTS {
                ui.label(format!("{}", i + 1));
                let edit = egui::TextEdit::singleline(&mut self.prompts[i])
                    .hint_text("a style (\"warm ambient piano\") or an audio file's path");
                // Inside a grid a text field takes its column's width: size it explicitly.
                let response = ui.add_sized([400.0, 20.0], edit);
                // What the worker will make of the committed text.
                let committed = self.params.saved.update(|s| s.prompts.get(i).cloned().unwrap_or_default());
                match mrt::style::Prompt::parse(committed.trim()) {
                    _ if committed.trim().is_empty() => ui.label(""),
                    mrt::style::Prompt::AudioFile(path) if path.is_file() => ui.label("audio").on_hover_text(path.display().to_string()),
                    mrt::style::Prompt::AudioFile(path) => ui
                        .label(RichText::new("missing").color(Color32::from_rgb(240, 90, 90)))
                        .on_hover_text(format!("no audio file at {}", path.display())),
                    _ => ui.label("text"),
                };
                if response.lost_focus() {
                    let text = self.prompts[i].clone();
                    let changed = self.params.saved.update(|s| {
                        s.prompts.resize(SLOTS, String::new());
                        let changed = s.prompts[i] != text;
                        s.prompts[i] = text;
                        changed
                    });
                    if changed {
                        self.repaint.request_repaint();
                    }
                }
                ui.add(ParamSlider::for_param(self.params.slot(i), setter).with_width(140.0));
                ui.end_row();
            }
        });
    }

    fn sidechain_ui(&mut self, ui: &mut egui::Ui, setter: &ParamSetter) {
        ui.horizontal(|ui| {
            ui.label("Sidechain as style");
            ui.add(ParamSlider::for_param(&self.params.sidechain_weight, setter).with_width(140.0));
            let peak = self.shared.sidechain_peak();
            let db = if peak > 0.0 { 20.0 * peak.log10() } else { -120.0 };
            let fraction = ((db + 60.0) / 60.0).clamp(0.0, 1.0);
            let text = if db > -120.0 { format!("{db:.0} dBFS") } else { "no signal".into() };
            ui.add(egui::ProgressBar::new(fraction).desired_width(180.0).text(text));
        });
    }

    fn sampling_ui(&mut self, ui: &mut egui::Ui, setter: &ParamSetter) {
        let p = &self.params;
        egui::Grid::new("sampling").num_columns(4).spacing([8.0, 4.0]).show(ui, |ui| {
            ui.label("Temperature");
            ui.add(ParamSlider::for_param(&p.temperature, setter).with_width(120.0));
            ui.label("Top-k");
            ui.add(ParamSlider::for_param(&p.top_k, setter).with_width(120.0));
            ui.end_row();
            ui.label("Guidance");
            ui.add(ParamSlider::for_param(&p.guidance, setter).with_width(120.0));
            ui.label("Seed");
            ui.add(ParamSlider::for_param(&p.seed, setter).with_width(120.0));
            ui.end_row();
            ui.label("Output gain");
            ui.add(ParamSlider::for_param(&p.gain, setter).with_width(120.0));
            ui.label("Chunks ahead");
            ui.add(ParamSlider::for_param(&p.chunks_ahead, setter).with_width(120.0));
            ui.end_row();
            ui.label("Render mode");
            ui.add(ParamSlider::for_param(&p.render_mode, setter).with_width(120.0));
            ui.end_row();
        });
        let mut free_run = p.free_run.value();
        if ui.checkbox(&mut free_run, "Free run (generate and play without the host transport)").changed() {
            setter.begin_set_parameter(&p.free_run);
            setter.set_parameter(&p.free_run, free_run);
            setter.end_set_parameter(&p.free_run);
        }
    }

    /// MRT2's note and drum conditioning (shown while MRT2 is the loaded family).
    fn mrt2_ui(&mut self, ui: &mut egui::Ui, setter: &ParamSetter) {
        let p = &self.params;
        egui::Grid::new("mrt2").num_columns(4).spacing([8.0, 4.0]).show(ui, |ui| {
            ui.label("Prompt adherence");
            ui.add(ParamSlider::for_param(&p.prompt_adherence, setter).with_width(120.0));
            ui.label("Note adherence");
            ui.add(ParamSlider::for_param(&p.note_adherence, setter).with_width(120.0));
            ui.end_row();
            ui.label("Drum adherence");
            ui.add(ParamSlider::for_param(&p.drum_adherence, setter).with_width(120.0));
            ui.label("Drum mode");
            ui.add(ParamSlider::for_param(&p.drum_mode, setter).with_width(120.0));
            ui.end_row();
            ui.label("Onset mode");
            ui.add(ParamSlider::for_param(&p.onset_mode, setter).with_width(120.0));
            ui.label("Unmask width");
            ui.add(ParamSlider::for_param(&p.unmask_width, setter).with_width(120.0));
            ui.end_row();
            ui.label("MIDI gate");
            ui.add(ParamSlider::for_param(&p.midi_gate, setter).with_width(120.0));
            ui.label("Buffer");
            ui.add(ParamSlider::for_param(&p.frames_ahead, setter).with_width(120.0));
            ui.end_row();
            ui.label("Style levels");
            ui.add(ParamSlider::for_param(&p.style_levels, setter).with_width(120.0));
            ui.end_row();
        });
        let held = self.shared.notes_held.load(Ordering::Relaxed);
        let dropped = self.shared.notes_dropped.load(Ordering::Relaxed);
        let mut line = format!("notes held: {held}");
        if dropped > 0 {
            line.push_str(&format!(" ({dropped} note events dropped: too many in one block)"));
        }
        ui.label(line);
    }

    fn model_ui(&mut self, ui: &mut egui::Ui) {
        egui::Grid::new("model").num_columns(2).spacing([8.0, 4.0]).show(ui, |ui| {
            ui.label("Model");
            use mrt::stream::Family;
            let before = self.family;
            egui::ComboBox::from_id_salt("family").selected_text(self.family.to_string()).show_ui(ui, |ui| {
                ui.selectable_value(&mut self.family, Family::V1, "v1 (2 s chunks)");
                ui.selectable_value(&mut self.family, Family::Mrt2, "mrt2 (40 ms frames, MIDI notes steer)");
            });
            if self.family != before {
                self.size = crate::params::default_size(self.family).into();
            }
            ui.end_row();
            ui.label("Model folder");
            ui.add_sized(
                [420.0, 20.0],
                egui::TextEdit::singleline(&mut self.model_dir).hint_text("default: $MRT_MODEL_DIR, then the Hugging Face cache"),
            );
            ui.end_row();
            ui.label("Size");
            egui::ComboBox::from_id_salt("size").selected_text(self.size.clone()).show_ui(ui, |ui| {
                let mut choices: Vec<String> = match self.family {
                    mrt::stream::Family::V1 => vec!["base".into(), "large".into()],
                    mrt::stream::Family::Mrt2 => mrt::assets::mrt2::MRT2_RELEASED_SIZES.iter().map(|s| s.to_string()).collect(),
                };
                if !choices.contains(&self.size) && !self.size.is_empty() {
                    choices.push(self.size.clone());
                }
                for c in choices {
                    ui.selectable_value(&mut self.size, c.clone(), c);
                }
            });
            ui.end_row();
            ui.label("Device");
            let shown = if self.device.is_empty() { "automatic".to_string() } else { self.device.clone() };
            egui::ComboBox::from_id_salt("device").selected_text(shown).show_ui(ui, |ui| {
                ui.selectable_value(&mut self.device, String::new(), "automatic");
                for d in mrt::DeviceChoice::compiled() {
                    let name = d.to_string();
                    ui.selectable_value(&mut self.device, name.clone(), name);
                }
            });
            ui.end_row();
            // Speed options of the CPU path (engine/NOTES.md, "CPU performance").
            use mrt::v1::lm::{DepthLogits, WeightPrecision};
            ui.label("LM weights");
            egui::ComboBox::from_id_salt("lm_weights").selected_text(self.lm_weights.to_string()).show_ui(ui, |ui| {
                ui.selectable_value(&mut self.lm_weights, WeightPrecision::F32, "f32 (exact)");
                ui.selectable_value(&mut self.lm_weights, WeightPrecision::Bf16, "bf16 (faster on the CPU)");
                ui.selectable_value(&mut self.lm_weights, WeightPrecision::Int8, "int8 (fastest on the CPU)");
            })
            .response
            .on_hover_text(
                "bf16 halves the bytes each decode step reads, ~1.7× faster LM on the CPU; tokens drift from the exact \
                 path after a few hundred steps. GPUs always run f32.",
            );
            ui.end_row();
            ui.label("Depth logits");
            egui::ComboBox::from_id_salt("depth_logits").selected_text(self.depth_logits.to_string()).show_ui(ui, |ui| {
                ui.selectable_value(&mut self.depth_logits, DepthLogits::All, "all (exact)");
                ui.selectable_value(&mut self.depth_logits, DepthLogits::Level, "level (faster)");
            })
            .response
            .on_hover_text(
                "Compute each depth step's logits over the current RVQ level's 1024 ids only: ids of other levels, \
                 which a trained model essentially never samples, cannot be drawn.",
            );
            ui.end_row();
        });
        let edited = self.edited_settings();
        let current = self.params.saved.update(|s| s.settings.clone());
        ui.horizontal(|ui| {
            let changed = edited != current;
            if ui.add_enabled(changed, egui::Button::new("Apply")).clicked() {
                self.params.saved.update(|s| s.settings = edited.clone());
                self.shared.reload.fetch_add(1, Ordering::AcqRel);
            }
            if ui.button("Reload").on_hover_text("Look for the model files again").clicked() {
                self.shared.reload.fetch_add(1, Ordering::AcqRel);
            }
        });
    }
}

impl NiceEguiApp for EditorApp {
    fn build(
        &mut self,
        egui_ctx: egui::Context,
        gui: GuiContext,
        _frame: &mut nice_plug_egui::Frame,
    ) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        egui_ctx.set_visuals(egui::Visuals::dark());
        self.gui = Some(gui);
        self.restores_seen = None;
        Ok(())
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut nice_plug_egui::Frame) {
        self.sync_from_state();
        let Some(gui) = self.gui.clone() else { return };
        let setter = gui.param_setter();
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.heading("MRT Live");
            ui.label(RichText::new("Magenta RealTime (v1: 2 s chunks; MRT2: 40 ms frames steered by MIDI notes)").weak());
            ui.separator();
            self.status_ui(ui);
            ui.separator();
            ui.label(RichText::new("Style").strong());
            self.slots_ui(ui, &setter);
            self.sidechain_ui(ui, &setter);
            ui.separator();
            ui.label(RichText::new("Sampling").strong());
            self.sampling_ui(ui, &setter);
            if self.params.saved.update(|s| s.settings.family) == mrt::stream::Family::Mrt2 {
                ui.separator();
                ui.label(RichText::new("MRT2: notes and drums").strong());
                self.mrt2_ui(ui, &setter);
            }
            ui.separator();
            ui.label(RichText::new("Model").strong());
            self.model_ui(ui);
        });
        // Live read-outs: ask for the next frame (polled every `REPAINT`).
        self.repaint.request_repaint();
    }

    fn editor_closed(&mut self) {
        self.gui = None;
    }
}

/// Downloads the model `settings` name on a new thread (into the settings' model folder, else
/// the Hugging Face cache), reporting in [`Shared::download`]; the worker then looks for the
/// model again. Does nothing while a download runs.
pub fn start_download(shared: Arc<Shared>, settings: Settings) {
    if shared.download.active.swap(true, Ordering::AcqRel) {
        return;
    }
    shared.download.failed.store(false, Ordering::Relaxed);
    shared.download.done_bytes.store(0, Ordering::Relaxed);
    shared.download.total_bytes.store(0, Ordering::Relaxed);
    shared.download.set_line(format!("looking up the {} model…", settings.size));
    let thread_shared = shared.clone();
    let spawned = std::thread::Builder::new().name("mrt-live download".into()).spawn(move || {
        let shared = thread_shared;
        let target = match &settings.model_dir {
            Some(d) => mrt::assets::FetchTarget::ModelDir(d.clone()),
            None => mrt::assets::FetchTarget::HfCache,
        };
        let progress = DownloadProgress { shared: &shared };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            mrt::assets::fetch_with(&settings.size, &target, &mrt::assets::FetchOptions::default(), &crate::params::asset_settings(), &progress)
        }));
        let (failed, line) = match result {
            Ok(Ok(_)) => (false, format!("the {} model is downloaded", settings.size)),
            Ok(Err(e)) => (true, format!("download failed: {e}")),
            Err(_) => (true, "download failed: the download thread panicked".to_string()),
        };
        shared.download.failed.store(failed, Ordering::Relaxed);
        shared.download.set_line(line);
        shared.download.active.store(false, Ordering::Release);
        shared.reload.fetch_add(1, Ordering::AcqRel);
    });
    if let Err(e) = spawned {
        shared.download.failed.store(true, Ordering::Relaxed);
        shared.download.set_line(format!("cannot start the download thread: {e}"));
        shared.download.active.store(false, Ordering::Release);
    }
}

/// Feeds the engine's fetch progress into [`Shared::download`].
struct DownloadProgress<'a> {
    shared: &'a Shared,
}

impl mrt::assets::Progress for DownloadProgress<'_> {
    fn begin(&self, what: &str, total_bytes: u64) {
        let dl = &self.shared.download;
        dl.total_bytes.store(total_bytes, Ordering::Relaxed);
        dl.done_bytes.store(0, Ordering::Relaxed);
        dl.set_line(what.to_string());
    }

    fn file(&self, file: &mrt::assets::RepoFile, _size: u64, _resumed_from: u64) {
        self.shared.download.set_line(file.to_string());
    }

    fn advance(&self, bytes: u64) {
        self.shared.download.done_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn note(&self, text: &str) {
        self.shared.download.set_line(text.to_string());
    }
}
