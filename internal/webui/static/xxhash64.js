// XXH64 (seed 0) over bytes, with BigInt: the hash cairn's ring places
// virtual nodes and keys with (internal/eventual/ring). The page computes
// the ring's tokens itself, because /v1/ring gives only each member's share;
// it checks itself against the hash the server reports for a key.
"use strict";
(function (global) {
  const M = (1n << 64n) - 1n;
  const P1 = 11400714785074694791n, P2 = 14029467366897019727n, P3 = 1609587929392839161n,
    P4 = 9650029242287828579n, P5 = 2870177450012600261n;
  const mul = (a, b) => (a * b) & M;
  const add = (a, b) => (a + b) & M;
  const rotl = (x, r) => ((x << BigInt(r)) | (x >> BigInt(64 - r))) & M;
  const round = (acc, input) => mul(rotl(add(acc, mul(input, P2)), 31), P1);
  const merge = (acc, v) => add(mul(acc ^ round(0n, v), P1), P4);
  function u64(b, i) {
    let lo = (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0;
    let hi = (b[i + 4] | (b[i + 5] << 8) | (b[i + 6] << 16) | (b[i + 7] << 24)) >>> 0;
    return (BigInt(hi) << 32n) | BigInt(lo);
  }
  function u32(b, i) {
    return BigInt((b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0);
  }
  // xxh64 returns the XXH64 of a Uint8Array as a BigInt in [0, 2^64).
  function xxh64(b) {
    const n = b.length;
    let i = 0, h;
    if (n >= 32) {
      let v1 = add(P1, P2), v2 = P2, v3 = 0n, v4 = (0n - P1) & M;
      for (; i + 32 <= n; i += 32) {
        v1 = round(v1, u64(b, i));
        v2 = round(v2, u64(b, i + 8));
        v3 = round(v3, u64(b, i + 16));
        v4 = round(v4, u64(b, i + 24));
      }
      h = add(add(rotl(v1, 1), rotl(v2, 7)), add(rotl(v3, 12), rotl(v4, 18)));
      h = merge(merge(merge(merge(h, v1), v2), v3), v4);
    } else {
      h = P5;
    }
    h = add(h, BigInt(n));
    for (; i + 8 <= n; i += 8) {
      h = add(mul(rotl(h ^ round(0n, u64(b, i)), 27), P1), P4);
    }
    if (i + 4 <= n) {
      h = add(mul(rotl(h ^ mul(u32(b, i), P1), 23), P2), P3);
      i += 4;
    }
    for (; i < n; i++) {
      h = mul(rotl(h ^ mul(BigInt(b[i]), P5), 11), P1);
    }
    h ^= h >> 33n; h = mul(h, P2);
    h ^= h >> 29n; h = mul(h, P3);
    h ^= h >> 32n;
    return h;
  }
  const enc = new TextEncoder();
  global.xxh64 = xxh64;
  // xxh64String hashes a string's UTF-8 bytes.
  global.xxh64String = (s) => xxh64(enc.encode(s));
})(window);
