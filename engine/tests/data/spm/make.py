import sentencepiece as spm, json, random
random.seed(0)
genres = ["funk","disco","jazz","ambient","techno","house","drum and bass","lo-fi hip hop","synthwave","bossa nova","reggae","metal","punk rock","classical piano","string quartet","dusty drums","funky bass","warm pads","acoustic guitar","808 bass","vinyl crackle","dreamy vocals","orchestral","chiptune","dubstep","trap","salsa","afrobeat","k-pop","flamenco guitar"]
adj = ["slow","fast","dark","bright","warm","cold","lush","minimal","heavy","soft","groovy","epic","mellow","upbeat"]
lines = []
for i in range(3000):
    lines.append(" ".join(random.sample(adj,2)) + " " + ", ".join(random.sample(genres,3)))
open("corpus.txt","w").write("\n".join(lines))
spm.SentencePieceTrainer.train(input="corpus.txt", model_prefix="tiny_unigram", vocab_size=100, model_type="unigram", character_coverage=1.0, user_defined_symbols=["<sep>"])
spm.SentencePieceTrainer.train(input="corpus.txt", model_prefix="tiny_bytes", vocab_size=350, model_type="unigram", byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False)
cases = ["funky bass, dusty drums", "", "   ", "  lush   warm\tpads  ", "ＦＵＮＫＹ ｂａｓｓ", "café crème", "ﬁne ﬂute", "🎸 guitar solo", "爵士 jazz", "808<sep>bass", "DISCO", "a\u00a0b", "①②", "x"*40, "no-wave\nnoise", "\u3000full width space"]
out = {}
for m in ["tiny_unigram","tiny_bytes"]:
    sp = spm.SentencePieceProcessor(model_file=m+".model")
    out[m] = [{"text": c, "ids": sp.encode(c), "pieces": sp.encode(c, out_type=str)} for c in cases]
json.dump(out, open("expected.json","w"), ensure_ascii=False, indent=1)
