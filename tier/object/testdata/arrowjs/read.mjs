// Reads shale data objects with the stock Arrow JS reader and prints, per
// file, one JSON line: {"file", "rows": [[topic, partition, offset_delta,
// timestamp_ms, key_b64|null, value_b64|null, [[header_key, value_b64|null], ...]], ...]}.
// Used by tier/object's TestArrowJSReadsObjects; not part of shale.
import { readFileSync } from "node:fs";
import { tableFromIPC, compressionRegistry, CompressionType } from "apache-arrow";
import lz4 from "lz4js";
import * as fzstd from "fzstd";

compressionRegistry.set(CompressionType.LZ4_FRAME, { encode: null, decode: (b) => lz4.decompress(b) });
// Copy: Arrow JS wants 8-byte aligned buffers, which fzstd's output may not be.
compressionRegistry.set(CompressionType.ZSTD, { encode: null, decode: (b) => new Uint8Array(fzstd.decompress(b)) });

const b64 = (v) => (v == null ? null : Buffer.from(v).toString("base64"));

for (const file of process.argv.slice(2)) {
  const table = tableFromIPC(readFileSync(file));
  const rows = [];
  for (const r of table) {
    const headers = [];
    for (const h of r.headers ?? []) headers.push([h.key, b64(h.value)]);
    rows.push([r.topic, r.partition, Number(r.offset_delta), Number(r.timestamp), b64(r.key), b64(r.value), headers]);
  }
  console.log(JSON.stringify({ file, rows }));
}
