//! Locating MRT2's files: one combined checkpoint per size (LM + decode-only codec), as
//! published in `google/magenta-realtime-2`:
//!
//! ```text
//!  checkpoints/mrt2_{small,base}.safetensors   LM (params/depthformer/…) + codec (params/soundstream/…)
//!  resources/spectrostream/, resources/musiccoca/   (the codec encoder, MusicCoCa front end)
//! ```
//!
//! Places, as for v1 ([`super::locate`]): the model directory (`<dir>/magenta-realtime-2/<path>`),
//! then the Hugging Face cache. A model directory's `mrt-live.json` may add sizes under `"mrt2"`:
//! `{"tiny": {"checkpoint": "magenta-realtime-2/checkpoints/mrt2_tiny.safetensors", "config":
//! { …an MRT2 fixture config.json, codec section included… }}}` (what `mrt dev tiny-model`
//! writes). Released sizes take the presets ([`Mrt2Config::mrt2_small`], [`Mrt2Config::mrt2_base`])
//! and the released codec's configuration. Prompts need the style model besides
//! ([`super::locate::locate_style`]).

use std::path::{Path, PathBuf};

use super::locate::{find_in, missing_item, read_manifest, roots, Item, Kind, Role};
use super::{AssetError, Located, Missing, Repo, Settings, Source};
use crate::codec::CodecConfig;
use crate::mrt2::Mrt2Config;

/// The sizes `google/magenta-realtime-2` publishes.
pub const MRT2_RELEASED_SIZES: [&str; 2] = ["small", "base"];

/// Repo path of a released size's checkpoint.
pub fn mrt2_checkpoint(size: &str) -> String {
    format!("checkpoints/mrt2_{size}.safetensors")
}

/// An MRT2 size found on disk.
#[derive(Clone, Debug)]
pub struct Mrt2Paths {
    pub size: String,
    /// The combined checkpoint (LM + decode-only codec).
    pub checkpoint: Located,
    pub config: Mrt2Config,
    pub codec_config: CodecConfig,
    /// The `mrt-live.json` that defined this size, if any.
    pub manifest: Option<PathBuf>,
}

fn released_config(size: &str) -> Option<Mrt2Config> {
    match size {
        "small" => Some(Mrt2Config::mrt2_small()),
        "base" => Some(Mrt2Config::mrt2_base()),
        _ => None,
    }
}

impl Mrt2Paths {
    /// Locates MRT2 `size`: a manifest entry of the model directory, else a released size's
    /// checkpoint in the model directory or the Hugging Face cache. Never uses the network.
    pub fn locate_with(size: &str, model_dir: Option<&Path>, settings: &Settings) -> Result<Self, AssetError> {
        let (roots, dir_root) = roots(model_dir, settings);
        let manifest = match &dir_root {
            Some((dir, _)) => read_manifest(dir)?,
            None => None,
        };
        if let Some((mpath, entry)) = manifest.as_ref().and_then(|(p, j)| j.mrt2.get(size).map(|e| (p, e))) {
            let bad = |reason: String| AssetError::BadManifest { path: mpath.clone(), reason };
            let (config, codec_config) = match (&entry.config, released_config(size)) {
                (Some(v), _) => {
                    let config = Mrt2Config::from_fixture_value(v).map_err(|e| bad(format!("mrt2.{size}.config: {e}")))?;
                    let codec = match v.get("codec") {
                        Some(c) => CodecConfig::from_mrt2_value(c).map_err(|e| bad(format!("mrt2.{size}.config.codec: {e}")))?,
                        None => CodecConfig::spectrostream_48k_stereo(),
                    };
                    (config, codec)
                }
                (None, Some(preset)) => (preset, CodecConfig::spectrostream_48k_stereo()),
                (None, None) => return Err(bad(format!("mrt2.{size} needs a \"config\" (`{size}` is not a released MRT2 size)"))),
            };
            let (dir, from_env) = dir_root.clone().expect("a manifest comes from a model dir");
            let path = dir.join(&entry.checkpoint);
            if !path.is_file() {
                return Err(bad(format!("mrt2.{size}.checkpoint {}: absent", path.display())));
            }
            return Ok(Self {
                size: size.to_string(),
                checkpoint: Located { path, source: Source::ModelDir { dir, from_env } },
                config,
                codec_config,
                manifest: Some(mpath.clone()),
            });
        }
        let Some(config) = released_config(size) else {
            let mut known: Vec<String> = MRT2_RELEASED_SIZES.iter().map(|s| s.to_string()).collect();
            if let Some((_, j)) = &manifest {
                known.extend(j.mrt2.keys().cloned());
            }
            return Err(AssetError::UnknownSize { size: format!("mrt2 {size}"), known, manifest: manifest.map(|(p, _)| p) });
        };
        let item = Item::new(Repo::V2, &mrt2_checkpoint(size), Kind::File, Role::Lm);
        match find_in(&roots, &item) {
            Ok(checkpoint) => Ok(Self {
                size: size.to_string(),
                checkpoint,
                config,
                codec_config: CodecConfig::spectrostream_48k_stereo(),
                manifest: None,
            }),
            Err(looked) => Err(AssetError::Missing(Box::new(Missing {
                size: format!("mrt2 {size}"),
                items: vec![missing_item(&item, looked)],
                hf_cache: settings.hf_cache.clone(),
                model_dir: dir_root.map(|(d, _)| d),
                fetch_error: None,
            }))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> Settings {
        Settings::new(dir.join("hf"), dir.join("cache"))
    }

    #[test]
    fn a_released_size_is_found_in_the_model_dir_and_a_missing_one_names_the_file() {
        let dir = std::env::temp_dir().join(format!("mrt2-locate-{}", std::process::id()));
        let ck = dir.join("magenta-realtime-2/checkpoints");
        std::fs::create_dir_all(&ck).unwrap();
        std::fs::write(ck.join("mrt2_small.safetensors"), b"x").unwrap();
        let p = Mrt2Paths::locate_with("small", Some(&dir), &settings(&dir)).unwrap();
        assert_eq!(p.checkpoint.path, ck.join("mrt2_small.safetensors"));
        assert_eq!(p.config, Mrt2Config::mrt2_small());
        let e = Mrt2Paths::locate_with("base", Some(&dir), &settings(&dir)).unwrap_err().to_string();
        assert!(e.contains("checkpoints/mrt2_base.safetensors"), "{e}");
        let e = Mrt2Paths::locate_with("large", Some(&dir), &settings(&dir)).unwrap_err().to_string();
        assert!(e.contains("mrt2 large") && e.contains("small, base"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
