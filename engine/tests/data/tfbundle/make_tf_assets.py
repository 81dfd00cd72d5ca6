# Writes a tiny SavedModel (3 variables: f32 matrix, bf16 vector, f16 scalar-ish) and a
# TFLite model with f32 + f16 constants, plus JSON with the exact expected values.
import json, os, sys
import numpy as np
import tensorflow as tf
out = sys.argv[1]
class M(tf.Module):
    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3) * 0.5 - 1.25)
        self.sub = tf.Module()
        self.sub.scale = tf.Variable(tf.constant([1.0, -2.5, 0.15625, 3.0e-3], dtype=tf.bfloat16))
        self.h = tf.Variable(tf.constant([[65504.0], [-0.333]], dtype=tf.float16))
    @tf.function(input_signature=[tf.TensorSpec([1, 2], tf.float32)])
    def __call__(self, x):
        return tf.matmul(x, self.kernel)
m = M()
sm = os.path.join(out, "savedmodel")
tf.saved_model.save(m, sm)
r = tf.train.load_checkpoint(os.path.join(sm, "variables", "variables"))
exp = {}
for k, shape in sorted(r.get_variable_to_shape_map().items()):
    if k == "_CHECKPOINTABLE_OBJECT_GRAPH":
        continue
    v = r.get_tensor(k)
    exp[k] = {"shape": list(shape), "dtype": str(r.get_variable_to_dtype_map()[k].name),
              "bits_f32": [int(b) for b in np.asarray(v, dtype=np.float32).view(np.uint32).ravel()]}
json.dump(exp, open(os.path.join(out, "savedmodel_expected.json"), "w"), indent=1)

# TFLite: y = x @ W + b, with W, b constants; float16 weights variant too.
W = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
b = np.array([0.5, -0.25, 0.125, 2.0], np.float32)
class F(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([1, 3], tf.float32)])
    def __call__(self, x):
        return tf.matmul(x, tf.constant(W)) + tf.constant(b)
f = F()
for name, f16, ext in [("dense_f32.tflite", False, False), ("dense_f16.tflite", True, False), ("dense_ext.tflite", False, True)]:
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.__call__.get_concrete_function()], f)
    if f16:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    if ext:
        conv._experimental_use_buffer_offset = True
    open(os.path.join(out, name), "wb").write(conv.convert())

# Expected constants as read by the `tflite` python package (an independent reader).
import tflite
texp = {}
for name in ["dense_f32.tflite", "dense_f16.tflite", "dense_ext.tflite"]:
    raw = open(os.path.join(out, name), "rb").read()
    m = tflite.Model.GetRootAsModel(raw, 0)
    g = m.Subgraphs(0)
    ts = []
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        buf = m.Buffers(t.Buffer())
        if buf.Offset() > 1:
            data = raw[buf.Offset():buf.Offset() + buf.Size()]
        else:
            data = buf.DataAsNumpy().tobytes() if buf.DataLength() else b""
        dt = {0: np.float32, 1: np.float16}.get(t.Type())
        vals = [] if not data or dt is None else [int(x) for x in np.frombuffer(data, dt).astype(np.float32).view(np.uint32)]
        ts.append({"name": t.Name().decode(), "shape": [int(d) for d in t.ShapeAsNumpy()], "type": int(t.Type()),
                   "buffer": int(t.Buffer()), "bits_f32": vals})
    texp[name] = ts
json.dump(texp, open(os.path.join(out, "tflite_expected.json"), "w"), indent=1)
print("ok")
