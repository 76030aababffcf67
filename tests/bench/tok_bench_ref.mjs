// The reference side of tok_bench: HF tokenizers (Rust) through the npm binding @anush008/tokenizers,
// one encode of the whole text per repeat, best of N. usage: node tok_bench_ref.mjs TOKENIZER.json TEXT [repeats]
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
const require = createRequire(process.env.FM_ORACLE_DIR + "/");
const { Tokenizer } = require("@anush008/tokenizers");
const [tokPath, textPath, repsArg] = process.argv.slice(2);
const text = readFileSync(textPath, "utf8");
const bytes = Buffer.byteLength(text);
let t = performance.now();
const tok = Tokenizer.fromFile(tokPath);
const load = (performance.now() - t) / 1000;
let best = Infinity, n = 0;
for (let r = 0; r < Number(repsArg || 3); r++) {
  t = performance.now();
  const enc = await tok.encode(text, null, { addSpecialTokens: false });
  const dt = (performance.now() - t) / 1000;
  n = enc.getIds().length;
  if (dt < best) best = dt;
}
console.log(`reference       load ${load.toFixed(3)} s  encode ${(bytes / 1e6).toFixed(2)} MB in ${best.toFixed(3)} s: ` +
  `${(bytes / 1e6 / best).toFixed(1)} MB/s, ${(n / best).toFixed(0)} tokens/s (${n} tokens)`);
