/*
 * _ingest_c.h: what the line scanner (_linescan.c) and the whole-column helpers (_columns.c) share:
 * Python's strict UTF-8 and the stable id hash, each written once. Static functions: each module
 * gets its own copy, inlined where the compiler likes.
 */
#ifndef MLMON_INGEST_C_H
#define MLMON_INGEST_C_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* Whether s is UTF-8 as Python's strict decoder takes it (no overlong forms, no surrogates, nothing
 * above U+10FFFF). The block parser already sends lines that are not to the reference; this keeps
 * the scanner from ever raising on one. */
static int utf8_ok(const char *s, Py_ssize_t len) {
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        unsigned c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        int n;
        unsigned cp;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (end - p <= n) return 0;
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        p += n + 1;
    }
    return 1;
}

/* exporter.ingest.ids.stable_id_hashes of one id, bit for bit: SplitMix64's finaliser over its
 * little-endian 8-byte words (the last zero-padded), each keyed by its position, summed, and
 * mixed with the length. tests/ingest/test_line_scanner.py compares the two. */
static inline uint64_t mix64(uint64_t z) {
    z ^= z >> 30;
    z *= 0xBF58476D1CE4E5B9ULL;
    z ^= z >> 27;
    z *= 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return z;
}

static uint64_t stable_id_hash(const unsigned char *s, Py_ssize_t len) {
    const uint64_t golden = 0x9E3779B97F4A7C15ULL;
    uint64_t sum = 0;
    for (Py_ssize_t j = 0; 8 * j < len; j++) {
        uint64_t word = 0;
        Py_ssize_t left = len - 8 * j < 8 ? len - 8 * j : 8;
        for (Py_ssize_t b = 0; b < left; b++) word |= (uint64_t)s[8 * j + b] << (8 * b);
        sum += mix64(word ^ mix64((uint64_t)(j + 1) * golden));
    }
    return mix64(sum + (uint64_t)(len + 1) * golden);
}

#endif
