//! File formats, with no model knowledge: what the official checkpoints and our caches are
//! written in. Every reader returns [`tensor::HostTensor`]s or its own typed values, and names the
//! file and the tensor in its errors.
//!
//! | module | format | used by |
//! |---|---|---|
//! | [`zarr`] | t5x checkpoints (zarr/TensorStore arrays) | the v1 LM |
//! | [`safetensors`] | safetensors (f32/f64/f16/bf16) | the codec, the converted LM cache, MRT2 |
//! | [`npy`] | NumPy `.npy`/`.npz` | fixtures, `mrt encode`/`decode` |
//! | [`proto`] | protobuf wire format | TF SavedModel, SentencePiece |
//! | [`tfbundle`] | TF tensor bundles (SavedModel variables) | MusicCoCa v1 |
//! | [`tflite`] | TFLite flatbuffers | MusicCoCa (MRT2 release) |
//! | [`tensor`] | one host tensor type and the take-and-check store every loader uses | all |

pub mod npy;
pub mod proto;
pub mod safetensors;
pub mod tensor;
pub mod tfbundle;
pub mod tflite;
pub mod zarr;

/// bfloat16 → f32 (exact: the top half of the f32 bits).
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// IEEE binary16 → f32 (exact, including subnormals, infinities and NaN).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    match exp {
        0 => sign * mant as f32 * 2f32.powi(-24),
        31 => f32::from_bits((u32::from(h & 0x8000) << 16) | 0x7f80_0000 | (mant << 13)),
        _ => f32::from_bits((u32::from(h & 0x8000) << 16) | ((exp + 112) << 23) | (mant << 13)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_convert() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
    }
}
