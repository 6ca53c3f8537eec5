/*
 * _linescan: JSON lines -> the columns a source's field mapping reads, in one C pass per line.
 *
 * Why it exists: decoding with msgspec builds a Python object per record and per field, and
 * pulling the columns out of them costs as much again; together they were half of ingest. This
 * scanner reads each line once, validates all of it as JSON, and keeps only the values of the
 * mapped paths, written straight into columns (C doubles for numbers, codes into a table of
 * distinct texts, the ids as Arrow-style bytes with their hashes and as the strings the batch holds).
 *
 * It never refuses a record. A line it takes is a complete, valid JSON object whose mapped values
 * all have their usual, valid form (below); for any other line it says "not mine" (a 0 in the
 * returned mask) and the caller hands the line to the msgspec path or the per-record reference,
 * which count what is wrong with it. So the rules here only decide which lines are plainly
 * valid, and every line it takes must give exactly what the reference (exporter.ingest.records)
 * gives; tests/ingest fuzz the two against each other.
 *
 * Taken (per slot kind; "absent" = the key or a parent object is missing):
 *   ID       a non-empty string without escapes, or an integer literal of at most 18 digits
 *            (not -0): its text, and its UTF-8 bytes and stable hash (the join's keys).
 *   TEXT     as ID, plus true/false -> "1"/"0"  (prediction, label, model of predictions).
 *   VERSION  as TEXT, plus absent/null -> the "unknown" text.
 *   OPTTEXT  as TEXT, plus absent/null -> None  (a label's model).
 *   CONF     a number in [0, 1], or absent/null (NaN).
 *   PROBS    an object of up to 64 distinct, non-empty, escape-free keys -> numbers in [0, 1]
 *            (the row's class list, one of at most 64 per scan, its values and their max), an
 *            empty object or absent/null (none, NaN). Numbers, not a dict per record: the
 *            caller's ProbabilityTable.
 *   TS       a number (a double), a string without escapes (kept as text for the caller's
 *            timestamp parser), or absent/null.
 *   FEATURE  a number (a double), or absent/null/array/object (NaN = None, as the reference's
 *            _feature makes nested values).
 * Anything else in a mapped place (escapes, -0 or a float as text, booleans as numbers, NaN or
 * Infinity literals, numbers beyond double range, a repeated mapped key, a key with escapes on a
 * mapped level, nesting deeper than 64) leaves the line to the other paths, and so does a line
 * that would bring a scan's distinct texts (of all text slots) past 1,024.
 *
 * Numbers: a JSON integer literal is an int to the reference and becomes float(int) (so -0 is
 * +0.0); other literals are float(text). Both are correctly rounded: up to 15 significant digits
 * and a power of ten up to 22 by one exact IEEE operation (Clinger's fast path); up to 19 digits
 * (repr's 17 included) and a power of ten from -21 to 19 by exact 128-bit integer arithmetic and
 * one rounding; anything else by CPython's own PyOS_string_to_double, which needs the GIL.
 *
 * The GIL: a block is scanned without it, start to end, and each taken line is written straight
 * into C buffers (numbers as doubles, texts as codes into the scan's table of distinct texts, ids
 * as bytes and hashes): so the pipeline thread runs meanwhile (the pipeline parses on a thread of
 * its own). A line whose number only PyOS_string_to_double can read stops the pass; it is scanned
 * again and written with the GIL, and the pass goes on after it. Python objects are made at the
 * end, with the GIL: one string per distinct text, per id and per textual timestamp. The scanner's
 * tables are only read while the GIL is released.
 *
 * One file of ~1,250 lines, over the house's 400, on purpose: one translation unit lets the
 * compiler inline the scanning functions into each other (the hot loop), and its parts (the JSON
 * grammar, the number conversion, the per-slot rules, the commit) are only checkable together.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_ingest_c.h"

enum { K_ID = 0, K_TEXT, K_VERSION, K_OPTTEXT, K_CONF, K_PROBS, K_TS, K_FEATURE, K_COUNT };
enum { T_ABSENT = 0, T_STR, T_NUM, T_TRUE, T_FALSE, T_NULL, T_OBJ, T_ARR };

#define MAX_DEPTH 64
#define MAX_PROBS 64
#define MAX_NODES 256
#define CACHE_SIZE 512 /* interned texts (classes, models, versions, probability keys); a power of 2 */

typedef struct {
    const char *key; /* into the scanner's key bytes */
    Py_ssize_t keylen;
    int slot;        /* leaf: index of its slot; inner node: -1 */
    int first_child; /* -1: none */
    int next_sibling;
    int next_same_hash; /* the next child of the same parent in the same KEY_HASH bucket */
} Node;

#define HASH_BUCKETS 32
/* Where a key is looked up among a node's children: length, first and last byte. */
static inline unsigned key_hash(const char *k, Py_ssize_t len) {
    if (len == 0) return 0;
    return ((unsigned)len * 7u + (unsigned char)k[0] * 3u + (unsigned char)k[len - 1]) & (HASH_BUCKETS - 1);
}

/* A number literal's parts, read while it is scanned: value = (-1)^neg * mant * 10^e when
 * digits <= 15 (mant then exact). */
typedef struct {
    uint64_t mant;
    long e;
    int digits; /* significant digits (leading zeros not counted) */
    int neg;
    int is_int; /* an integer literal (no fraction, no exponent) */
} Num;

typedef struct {
    const char *s; /* span in the line (for strings: inside the quotes) */
    Py_ssize_t len;
    int type;
    Num num; /* T_NUM */
} Token;

typedef struct {
    const char *key;
    Py_ssize_t keylen;
    double value;
} Prob;

typedef struct {
    PyObject_HEAD
    int n_nodes;
    int n_slots;
    Node nodes[MAX_NODES];
    int16_t buckets[MAX_NODES][HASH_BUCKETS]; /* per node: its first child in each bucket, -1 none */
    int slot_kind[MAX_NODES];
    int probs_slot; /* the K_PROBS slot, -1 none */
    PyObject *keys;    /* bytes objects the nodes' keys point into */
    PyObject *unknown; /* the VERSION text for absent/null */
    const char *unknown_utf8; /* its UTF-8, alive with it */
    Py_ssize_t unknown_len;
    PyObject *cache_obj[CACHE_SIZE];
    uint64_t cache_hash[CACHE_SIZE];
} Scanner;

/* The state of one line's scan: the scanner itself is read-only while lines are scanned, so they
 * are scanned without the GIL. */
typedef struct {
    uint32_t line_gen;
    uint32_t seen[MAX_NODES]; /* line_gen of the line that set this node: a repeated key */
    Token tok[MAX_NODES];     /* per slot */
    Prob probs[MAX_PROBS];
    int n_probs;
    int allow_slow; /* the GIL is held: numbers beyond the fast paths may use PyOS_string_to_double */
} Worker;

/* ---- JSON scanning ------------------------------------------------------------------------- */

typedef struct {
    const Scanner *sc;
    Worker *w;
    const char *end;
    int bail;
} Ctx;

static inline const char *ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    return p;
}

static inline int hexdig(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Bytes a string scan must stop at: the quote, a backslash, control characters. */
static unsigned char STOP[256];

/* p at the opening quote; returns past the closing quote, NULL if invalid. *esc: had a backslash. */
static const char *scan_string(const char *p, const char *end, int *esc) {
    p++;
    *esc = 0;
    while (p < end) {
        while (p + 4 <= end && !(STOP[(unsigned char)p[0]] | STOP[(unsigned char)p[1]] |
                                 STOP[(unsigned char)p[2]] | STOP[(unsigned char)p[3]]))
            p += 4;
        while (p < end && !STOP[(unsigned char)*p]) p++;
        if (p >= end) return NULL;
        unsigned char c = (unsigned char)*p;
        if (c == '"') return p + 1;
        if (c < 0x20) return NULL; /* json.loads(strict=True) refuses control characters */
        if (c == '\\') {
            *esc = 1;
            if (p + 1 >= end) return NULL;
            char e = p[1];
            if (e == 'u') {
                if (p + 6 > end || !hexdig(p[2]) || !hexdig(p[3]) || !hexdig(p[4]) || !hexdig(p[5])) return NULL;
                p += 6;
                continue;
            }
            if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' && e != 'r' && e != 't')
                return NULL;
            p += 2;
            continue;
        }
        p++;
    }
    return NULL;
}

#define IS_DIGIT(c) ((unsigned)((c) - '0') < 10u)

/* JSON's number grammar, -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, and the literal's parts. */
static const char *scan_number(const char *p, const char *end, Num *n) {
    const char *q = p;
    uint64_t mant = 0;
    int digits = 0;
    long frac = 0, exp10 = 0;
    n->neg = 0;
    n->is_int = 1;
    if (q < end && *q == '-') {
        n->neg = 1;
        q++;
    }
    if (q >= end) return NULL;
    if (*q == '0') {
        q++;
    } else if (*q >= '1' && *q <= '9') {
        for (; q < end && IS_DIGIT(*q); q++) {
            if (digits < 19) mant = mant * 10 + (uint64_t)(*q - '0');
            digits++;
        }
    } else {
        return NULL;
    }
    if (q < end && *q == '.') {
        q++;
        if (q >= end || !IS_DIGIT(*q)) return NULL;
        for (; q < end && IS_DIGIT(*q); q++) {
            frac++;
            if (mant == 0 && *q == '0') continue; /* leading zeros are no significant digits */
            if (digits < 19) mant = mant * 10 + (uint64_t)(*q - '0');
            digits++;
        }
        n->is_int = 0;
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        int eneg = 0;
        q++;
        if (q < end && (*q == '+' || *q == '-')) eneg = *q++ == '-';
        if (q >= end || !IS_DIGIT(*q)) return NULL;
        for (; q < end && IS_DIGIT(*q); q++) {
            if (exp10 < 100000) exp10 = exp10 * 10 + (*q - '0');
        }
        if (eneg) exp10 = -exp10;
        n->is_int = 0;
    }
    n->mant = mant;
    n->digits = digits;
    n->e = exp10 - frac;
    return q;
}

static const char *scan_value(Ctx *cx, const char *p, int node, int depth);

/* An object member's key and colon: p at the key's quote; returns the value's first byte (past
 * whitespace), NULL if invalid. */
static const char *member_key(const char *p, const char *end, const char **ks, Py_ssize_t *klen, int *esc) {
    if (p >= end || *p != '"') return NULL;
    *ks = p + 1;
    const char *q = scan_string(p, end, esc);
    if (q == NULL) return NULL;
    *klen = (q - 1) - *ks;
    p = ws(q, end);
    if (p >= end || *p != ':') return NULL;
    return ws(p + 1, end);
}

/* After a member or element: past ',' and whitespace (*more = 1), or past the closing bracket
 * (*more = 0); NULL if neither follows. */
static const char *next_item(const char *p, const char *end, char close, int *more) {
    p = ws(p, end);
    if (p >= end) return NULL;
    if (*p == ',') {
        *more = 1;
        return ws(p + 1, end);
    }
    *more = 0;
    return *p == close ? p + 1 : NULL;
}

/* p at '{'. node: the trie node this object stands at (-1: unmapped). */
static const char *scan_object(Ctx *cx, const char *p, int node, int depth) {
    const Scanner *sc = cx->sc;
    Worker *w = cx->w;
    const char *end = cx->end;
    int first_child = node >= 0 ? sc->nodes[node].first_child : -1;
    if (depth > MAX_DEPTH) {
        cx->bail = 1;
        return NULL;
    }
    p = ws(p + 1, end);
    if (p < end && *p == '}') return p + 1;
    for (int more = 1; more;) {
        int esc;
        const char *ks;
        Py_ssize_t klen;
        p = member_key(p, end, &ks, &klen, &esc);
        if (p == NULL) return NULL;
        int child = -1;
        if (first_child >= 0) {
            if (esc) { /* an escaped key might spell a mapped one */
                cx->bail = 1;
                return NULL;
            }
            for (int c = sc->buckets[node][key_hash(ks, klen)]; c >= 0; c = sc->nodes[c].next_same_hash) {
                const Node *nd = &sc->nodes[c];
                if (nd->keylen == klen &&
                    (klen == 0 || (nd->key[klen - 1] == ks[klen - 1] && nd->key[0] == ks[0] &&
                                   (klen <= 2 || memcmp(nd->key + 1, ks + 1, (size_t)klen - 2) == 0)))) {
                    child = c;
                    break;
                }
            }
            if (child >= 0) {
                if (w->seen[child] == w->line_gen) { /* a repeated mapped key: json keeps the last */
                    cx->bail = 1;
                    return NULL;
                }
                w->seen[child] = w->line_gen;
            }
        }
        p = scan_value(cx, p, child, depth + 1);
        if (p == NULL) return NULL;
        p = next_item(p, end, '}', &more);
        if (p == NULL) return NULL;
    }
    return p;
}

static const char *scan_array(Ctx *cx, const char *p, int depth) {
    const char *end = cx->end;
    if (depth > MAX_DEPTH) {
        cx->bail = 1;
        return NULL;
    }
    p = ws(p + 1, end);
    if (p < end && *p == ']') return p + 1;
    for (int more = 1; more;) {
        p = scan_value(cx, p, -1, depth + 1);
        if (p == NULL) return NULL;
        p = next_item(p, end, ']', &more);
        if (p == NULL) return NULL;
    }
    return p;
}

static double to_double(const char *s, Py_ssize_t len, const Num *n, int allow_slow, int *ok);

/* A probabilities object: keys and values kept for the line's commit. p at '{'. */
static const char *scan_probs(Ctx *cx, const char *p) {
    Worker *w = cx->w;
    const char *end = cx->end;
    w->n_probs = 0;
    p = ws(p + 1, end);
    if (p < end && *p == '}') return p + 1;
    for (int more = 1; more;) {
        int esc;
        const char *ks;
        Py_ssize_t klen;
        p = member_key(p, end, &ks, &klen, &esc);
        if (p == NULL) return NULL;
        if (esc || klen == 0 || w->n_probs >= MAX_PROBS || !utf8_ok(ks, klen)) {
            cx->bail = 1;
            return NULL;
        }
        for (int i = 0; i < w->n_probs; i++) {
            if (w->probs[i].keylen == klen && memcmp(w->probs[i].key, ks, (size_t)klen) == 0) {
                cx->bail = 1; /* a repeated class */
                return NULL;
            }
        }
        Num num;
        const char *v = p;
        if (p >= end || !(*p == '-' || IS_DIGIT(*p))) {
            cx->bail = 1; /* not a number: the reference refuses it; leave that to it */
            return NULL;
        }
        p = scan_number(p, end, &num);
        if (p == NULL) return NULL;
        int ok;
        double x = to_double(v, p - v, &num, w->allow_slow, &ok);
        if (ok != 1 || !(x >= 0.0 && x <= 1.0)) {
            cx->bail = ok == -1 ? 2 : 1;
            return NULL;
        }
        Prob *pr = &w->probs[w->n_probs++];
        pr->key = ks;
        pr->keylen = klen;
        pr->value = x;
        p = next_item(p, end, '}', &more);
        if (p == NULL) return NULL;
    }
    return p;
}

static const char *scan_value(Ctx *cx, const char *p, int node, int depth) {
    const Scanner *sc = cx->sc;
    const char *end = cx->end;
    if (p >= end) return NULL;
    int slot = node >= 0 ? sc->nodes[node].slot : -1;
    Token *t = slot >= 0 ? &cx->w->tok[slot] : NULL;
    const char *start = p;
    const char *q;
    int type;
    Num num = {0, 0, 0, 0, 0};
    switch (*p) {
    case '{':
        if (node >= 0 && slot < 0) return scan_object(cx, p, node, depth);
        if (slot >= 0 && sc->slot_kind[slot] == K_PROBS) {
            q = scan_probs(cx, p);
        } else {
            q = scan_object(cx, p, -1, depth);
        }
        type = T_OBJ;
        break;
    case '[':
        q = scan_array(cx, p, depth);
        type = T_ARR;
        break;
    case '"': {
        int esc;
        q = scan_string(p, end, &esc);
        if (q == NULL || t == NULL) return q;
        if (esc) { /* mapped text with escapes: the decoders unescape it */
            cx->bail = 1;
            return NULL;
        }
        t->s = p + 1;
        t->len = (q - 1) - (p + 1);
        t->type = T_STR;
        return q;
    }
    case 't':
        q = (end - p >= 4 && memcmp(p, "true", 4) == 0) ? p + 4 : NULL;
        type = T_TRUE;
        break;
    case 'f':
        q = (end - p >= 5 && memcmp(p, "false", 5) == 0) ? p + 5 : NULL;
        type = T_FALSE;
        break;
    case 'n':
        q = (end - p >= 4 && memcmp(p, "null", 4) == 0) ? p + 4 : NULL;
        type = T_NULL;
        break;
    default:
        if (*p == '-' || (*p >= '0' && *p <= '9')) {
            q = scan_number(p, end, &num);
            type = T_NUM;
        } else {
            /* NaN, Infinity, -Infinity: json.loads takes them; leave those lines to it */
            cx->bail = 1;
            return NULL;
        }
    }
    if (q == NULL) return NULL;
    if (t != NULL) {
        t->s = start;
        t->len = q - start;
        t->type = type;
        t->num = num;
    }
    return q;
}

/* ---- numbers --------------------------------------------------------------------------------- */

static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* float() of a JSON number literal (its span and parts), correctly rounded; *ok = 0 if it is
 * beyond double range (the reference then has inf, or an OverflowError for an integer: never a
 * usable value). */
typedef unsigned __int128 u128;

static int bitlen128(u128 x) {
    uint64_t hi = (uint64_t)(x >> 64), lo = (uint64_t)x;
    if (hi) return 128 - __builtin_clzll(hi);
    return lo ? 64 - __builtin_clzll(lo) : 0;
}

/* x * 2^shift rounded once to a double: x cut to 64 bits, the bits cut off kept as a sticky
 * bit in the lowest place (below the guard bit, since the kept part has >= 55 bits), and the
 * uint64 -> double conversion rounds to nearest even. The result is a normal double here. */
static double round_scaled(u128 x, int shift) {
    int cut = bitlen128(x) - 64;
    if (cut > 0) {
        uint64_t sticky = (x & ((((u128)1) << cut) - 1)) != 0;
        x = (x >> cut) | sticky;
        shift += cut;
    }
    return ldexp((double)(uint64_t)x, shift);
}

/* Exact 10^k for k <= 38 as a 128-bit integer. */
static u128 pow10_128(int k) {
    u128 p = 1;
    while (k-- > 0) p *= 10;
    return p;
}

/* *ok: 1, or 0 beyond double range, or -1 when only PyOS_string_to_double can say and
 * allow_slow is 0 (no GIL): the line is then scanned again with the GIL. */
static double to_double(const char *s, Py_ssize_t len, const Num *n, int allow_slow, int *ok) {
    *ok = 1;
    if (n->mant == 0) { /* int(-0) is 0; float("-0.0") is -0.0 */
        return (n->neg && !n->is_int) ? -0.0 : 0.0;
    }
    if (n->digits <= 15 && n->e >= -22 && n->e <= 22) {
        double x = (double)n->mant; /* exact: mant < 10^15 < 2^53 */
        x = n->e >= 0 ? x * POW10[n->e] : x / POW10[-n->e];
        if (isinf(x)) *ok = 0;
        return n->neg ? -x : x;
    }
    if (n->digits <= 19 && n->e >= -21 && n->e <= 19) {
        /* 16-19 digits (what repr() writes for most doubles): exact integer arithmetic in 128
         * bits, then one rounding. mant < 10^19 < 2^64 holds every digit. */
        double x;
        if (n->e >= 0) {
            x = round_scaled((u128)n->mant * pow10_128((int)n->e), 0); /* < 2^64 * 10^19 < 2^128 */
        } else {
            /* mant / 10^k: the quotient of mant * 2^s with >= 56 bits, the remainder as a sticky bit */
            u128 d = pow10_128((int)-n->e); /* 10^21 < 2^70 */
            int s = 56 + bitlen128(d) - bitlen128(n->mant);
            if (s < 0) s = 0;
            u128 num = (u128)n->mant << s; /* bits <= 56 + 70 = 126 */
            u128 q = num / d;
            x = round_scaled(q | (num % d != 0), -s);
        }
        return n->neg ? -x : x;
    }
    if (!allow_slow) {
        *ok = -1;
        return 0.0;
    }
    char stack[64];
    char *buf = len < (Py_ssize_t)sizeof(stack) ? stack : PyMem_Malloc((size_t)len + 1);
    if (buf == NULL) {
        PyErr_Clear();
        *ok = 0;
        return 0.0;
    }
    memcpy(buf, s, (size_t)len);
    buf[len] = '\0';
    double x = PyOS_string_to_double(buf, NULL, NULL); /* overflow -> +-inf, no exception */
    if (buf != stack) PyMem_Free(buf);
    if (x == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        *ok = 0;
        return 0.0;
    }
    if (!isfinite(x)) *ok = 0;
    return x;
}

/* ---- Python objects -------------------------------------------------------------------------- */

static PyObject *new_text(const char *s, Py_ssize_t len) {
    for (Py_ssize_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] >= 0x80) return PyUnicode_DecodeUTF8(s, len, "strict");
    }
    PyObject *u = PyUnicode_New(len, 127);
    if (u != NULL) memcpy(PyUnicode_1BYTE_DATA(u), s, (size_t)len);
    return u;
}

static uint64_t fnv1a(const char *s, Py_ssize_t len) {
    uint64_t h = 1469598103934665603ULL;
    for (Py_ssize_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h | 1; /* never 0: 0 marks an empty cache entry */
}

/* A text from the cache (a new reference): classes, models and versions repeat on every line. */
static PyObject *cached_text(Scanner *sc, const char *s, Py_ssize_t len) {
    uint64_t h = fnv1a(s, len);
    size_t at = (size_t)(h & (CACHE_SIZE - 1));
    for (int probe = 0; probe < 8; probe++, at = (at + 1) & (CACHE_SIZE - 1)) {
        PyObject *o = sc->cache_obj[at];
        if (o == NULL) {
            o = new_text(s, len);
            if (o == NULL) return NULL;
            Py_INCREF(o);
            sc->cache_obj[at] = o;
            sc->cache_hash[at] = h;
            return o;
        }
        if (sc->cache_hash[at] == h) {
            Py_ssize_t ulen;
            const char *u = PyUnicode_AsUTF8AndSize(o, &ulen);
            if (u != NULL && ulen == len && memcmp(u, s, (size_t)len) == 0) {
                Py_INCREF(o);
                return o;
            }
            PyErr_Clear();
        }
    }
    return new_text(s, len); /* a full neighbourhood: uncached */
}

/* ---- the per-line rules ---------------------------------------------------------------------- */

/* The text of a TEXT-like token, or 0 if the line is not this scanner's. */
static int text_ok(const Token *t, int bools) {
    if (t->type == T_STR) return t->len > 0 && utf8_ok(t->s, t->len);
    if (t->type == T_NUM) {
        if (!t->num.is_int) return 0;
        Py_ssize_t digits = t->len - (t->s[0] == '-');
        if (digits > 18) return 0;
        if (t->len == 2 && t->s[0] == '-' && t->s[1] == '0') return 0; /* str(int("-0")) is "0" */
        return 1;
    }
    if (bools && (t->type == T_TRUE || t->type == T_FALSE)) return 1;
    return 0;
}

/* Checks every slot of a scanned line and fills the doubles of numeric slots: 1 taken, 0 not
 * this scanner's, -1 a number needs the GIL (see to_double). */
static int line_ok(const Scanner *sc, Worker *w, double *num) {
    for (int k = 0; k < sc->n_slots; k++) {
        Token *t = &w->tok[k];
        int ok = 1;
        num[k] = NAN;
        switch (sc->slot_kind[k]) {
        case K_ID:
            if (!text_ok(t, 0)) return 0;
            break;
        case K_TEXT:
            if (!text_ok(t, 1)) return 0;
            break;
        case K_VERSION:
        case K_OPTTEXT:
            if (t->type != T_ABSENT && t->type != T_NULL && !text_ok(t, 1)) return 0;
            break;
        case K_CONF:
            if (t->type == T_NUM) {
                num[k] = to_double(t->s, t->len, &t->num, w->allow_slow, &ok);
                if (ok != 1) return ok;
                if (!(num[k] >= 0.0 && num[k] <= 1.0)) return 0;
            } else if (t->type != T_ABSENT && t->type != T_NULL) {
                return 0;
            }
            break;
        case K_PROBS:
            if (t->type != T_ABSENT && t->type != T_NULL && t->type != T_OBJ) return 0;
            break;
        case K_TS:
            if (t->type == T_NUM) {
                num[k] = to_double(t->s, t->len, &t->num, w->allow_slow, &ok);
                if (ok != 1) return ok;
            } else if (t->type == T_STR) {
                if (!utf8_ok(t->s, t->len)) return 0;
            } else if (t->type != T_ABSENT && t->type != T_NULL) {
                return 0;
            }
            break;
        case K_FEATURE:
            if (t->type == T_NUM) {
                num[k] = to_double(t->s, t->len, &t->num, w->allow_slow, &ok);
                if (ok != 1) return ok;
            } else if (t->type == T_STR || t->type == T_TRUE || t->type == T_FALSE) {
                return 0; /* text and booleans stay Python values: the other paths build them */
            }
            break;
        }
    }
    return 1;
}

/* One line: 1 taken (its tokens, doubles and probabilities in w and num), 0 not, -1 scan it
 * again with the GIL. No Python API is called unless w->allow_slow. */
static int scan_line(const Scanner *sc, Worker *w, const char *p, const char *end, double *num) {
    if (p >= end || *p != '{') return 0;
    if (++w->line_gen == 0) { /* wrapped: forget every mark */
        memset(w->seen, 0, sizeof(w->seen));
        w->line_gen = 1;
    }
    for (int k = 0; k < sc->n_slots; k++) w->tok[k].type = T_ABSENT;
    w->n_probs = 0;
    Ctx cx = {sc, w, end, 0};
    const char *q = scan_object(&cx, p, 0, 1);
    if (q == NULL) {
        /* a probability that only the slow path reads leaves the line to the GIL pass too */
        return cx.bail == 2 ? -1 : 0;
    }
    if (ws(q, end) != end) return 0; /* extra data */
    return line_ok(sc, w, num);
}

/* ---- the type -------------------------------------------------------------------------------- */

static int Scanner_init(Scanner *sc, PyObject *args, PyObject *kw) {
    PyObject *paths, *kinds, *unknown;
    static char *kwlist[] = {"paths", "kinds", "unknown", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOU", kwlist, &paths, &kinds, &unknown)) return -1;
    if (!PyList_Check(paths) || !PyList_Check(kinds) || PyList_GET_SIZE(paths) != PyList_GET_SIZE(kinds)) {
        PyErr_SetString(PyExc_TypeError, "paths and kinds: lists of the same length");
        return -1;
    }
    Py_ssize_t n_slots = PyList_GET_SIZE(paths);
    if (n_slots > MAX_NODES / 2) {
        PyErr_SetString(PyExc_ValueError, "too many mapped fields");
        return -1;
    }
    PyObject *keys = PyList_New(0);
    if (keys == NULL) return -1;
    Py_XSETREF(sc->keys, keys);
    Py_INCREF(unknown);
    Py_XSETREF(sc->unknown, unknown);
    if ((sc->unknown_utf8 = PyUnicode_AsUTF8AndSize(unknown, &sc->unknown_len)) == NULL) return -1;
    /* node 0: the record itself */
    sc->n_nodes = 1;
    sc->nodes[0] = (Node){NULL, 0, -1, -1, -1, -1};
    memset(sc->buckets, 0xff, sizeof(sc->buckets)); /* every bucket -1 */
    sc->n_slots = (int)n_slots;
    sc->probs_slot = -1;
    for (Py_ssize_t k = 0; k < n_slots; k++) {
        PyObject *path = PyList_GET_ITEM(paths, k);
        long kind = PyLong_AsLong(PyList_GET_ITEM(kinds, k));
        if (kind == -1 && PyErr_Occurred()) return -1;
        if (!PyTuple_Check(path) || PyTuple_GET_SIZE(path) == 0 || kind < 0 || kind >= K_COUNT) {
            PyErr_SetString(PyExc_ValueError, "a path is a non-empty tuple of bytes keys; kinds are K_*");
            return -1;
        }
        sc->slot_kind[k] = (int)kind;
        if (kind == K_PROBS) sc->probs_slot = (int)k;
        int node = 0;
        Py_ssize_t depth = PyTuple_GET_SIZE(path);
        for (Py_ssize_t d = 0; d < depth; d++) {
            PyObject *key = PyTuple_GET_ITEM(path, d);
            if (!PyBytes_Check(key)) {
                PyErr_SetString(PyExc_TypeError, "path keys are bytes");
                return -1;
            }
            if (PyList_Append(keys, key) < 0) return -1;
            const char *ks = PyBytes_AS_STRING(key);
            Py_ssize_t kl = PyBytes_GET_SIZE(key);
            int child = -1;
            for (int c = sc->nodes[node].first_child; c >= 0; c = sc->nodes[c].next_sibling) {
                if (sc->nodes[c].keylen == kl && memcmp(sc->nodes[c].key, ks, (size_t)kl) == 0) {
                    child = c;
                    break;
                }
            }
            int leaf = d == depth - 1;
            if (child >= 0) {
                /* a path through a leaf, or a leaf twice: only the reference handles such mappings */
                if (leaf || sc->nodes[child].slot >= 0) {
                    PyErr_SetString(PyExc_ValueError, "clashing paths");
                    return -1;
                }
            } else {
                if (sc->n_nodes >= MAX_NODES) {
                    PyErr_SetString(PyExc_ValueError, "too many path keys");
                    return -1;
                }
                child = sc->n_nodes++;
                unsigned h = key_hash(ks, kl);
                sc->nodes[child] = (Node){ks, kl, -1, -1, sc->nodes[node].first_child, sc->buckets[node][h]};
                sc->nodes[node].first_child = child;
                sc->buckets[node][h] = (int16_t)child;
            }
            if (leaf) {
                if (sc->nodes[child].first_child >= 0) {
                    PyErr_SetString(PyExc_ValueError, "clashing paths");
                    return -1;
                }
                sc->nodes[child].slot = (int)k;
            }
            node = child;
        }
    }
    return 0;
}

static void Scanner_dealloc(Scanner *sc) {
    for (int i = 0; i < CACHE_SIZE; i++) Py_CLEAR(sc->cache_obj[i]);
    Py_CLEAR(sc->keys);
    Py_CLEAR(sc->unknown);
    Py_TYPE(sc)->tp_free((PyObject *)sc);
}

/* ---- the columns ------------------------------------------------------------------------------
 * A taken line is written straight into C buffers, without the GIL: numbers as doubles, texts as
 * codes into the scan's table of distinct texts (classes, models and versions repeat on every
 * line), ids as bytes with their hashes, probabilities as one run of doubles. Python objects are
 * made once at the end of the scan: one string per distinct text, per id and per textual
 * timestamp. */

#define MAX_CLASS_SETS 64 /* distinct probability key lists per scan; a line with another is left */
#define MAX_TEXTS 1024    /* distinct texts per scan; a line with another is left */
#define TEXT_BUCKETS 2048 /* a power of 2, twice MAX_TEXTS */

/* The scan's distinct texts, as spans of the first line that had each (the data is alive for the
 * scan), found by their bytes. */
typedef struct {
    int n;
    const char *s[MAX_TEXTS];
    Py_ssize_t len[MAX_TEXTS];
    uint64_t hash[MAX_TEXTS];
    int16_t bucket[TEXT_BUCKETS]; /* -1: empty */
} Texts;

static uint64_t fnv1a(const char *s, Py_ssize_t len);

/* The code of a text, registering it when new; -1 when the table is full. */
static int text_code(Texts *tx, const char *s, Py_ssize_t len) {
    uint64_t h = fnv1a(s, len);
    for (size_t at = (size_t)h & (TEXT_BUCKETS - 1);; at = (at + 1) & (TEXT_BUCKETS - 1)) {
        int code = tx->bucket[at];
        if (code < 0) {
            if (tx->n >= MAX_TEXTS) return -1;
            code = tx->n++;
            tx->s[code] = s;
            tx->len[code] = len;
            tx->hash[code] = h;
            tx->bucket[at] = (int16_t)code;
            return code;
        }
        if (tx->hash[code] == h && tx->len[code] == len && memcmp(tx->s[code], s, (size_t)len) == 0) return code;
    }
}

typedef struct {
    const char *s;
    Py_ssize_t len;
} Span;

typedef struct {
    PyObject *values; /* bytearray of doubles: CONF, FEATURE, TS numbers, PROBS max; ID: uint64 hashes */
    PyObject *codes;  /* bytearray: TEXT-like int32 text codes (-1 None); PROBS int32 class list (-1 none);
                       * TS uint8 kinds (0 absent, 1 number, 2 text); ID int32 offsets (n + 1) */
    char *flat;       /* malloc'd: ID the ids' bytes one after another; PROBS every row's doubles */
    size_t flat_len, flat_cap; /* bytes */
    Span *spans;      /* TS: each textual timestamp, in row order */
    size_t n_spans, spans_cap; /* spans_cap: bytes */
    const char *last_s; /* text slots: the previous row's text and its code */
    Py_ssize_t last_len;
    int last_code;
    /* PROBS: the class lists met, as spans of their first line */
    int n_sets;
    int last_set;
    int set_len[MAX_CLASS_SETS];
    const char *set_key[MAX_CLASS_SETS][MAX_PROBS];
    Py_ssize_t set_keylen[MAX_CLASS_SETS][MAX_PROBS];
} Column;

typedef struct {
    const Scanner *sc;
    Column *cols;
    Texts *texts;
    Py_ssize_t taken;
    int oom;
} Out;

static void free_columns(Column *cols, int n) {
    for (int k = 0; k < n; k++) {
        Py_XDECREF(cols[k].values);
        Py_XDECREF(cols[k].codes);
        free(cols[k].flat);
        free(cols[k].spans);
    }
    PyMem_Free(cols);
}

static int grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < need) c *= 2;
    char *g = realloc(*buf, c);
    if (g == NULL) return -1;
    *buf = g;
    *cap = c;
    return 0;
}

static int same_set(const Column *c, int set, const Prob *probs, int n_probs) {
    if (c->set_len[set] != n_probs) return 0;
    for (int i = 0; i < n_probs; i++) {
        if (c->set_keylen[set][i] != probs[i].keylen || memcmp(c->set_key[set][i], probs[i].key, (size_t)probs[i].keylen))
            return 0;
    }
    return 1;
}

/* The index of the row's class list among those met, registering it when new; -1 when there are
 * already MAX_CLASS_SETS (the line is then left). */
static int class_set(Column *c, const Prob *probs, int n_probs) {
    if (c->last_set >= 0 && same_set(c, c->last_set, probs, n_probs)) return c->last_set;
    for (int k = 0; k < c->n_sets; k++) {
        if (same_set(c, k, probs, n_probs)) return c->last_set = k;
    }
    if (c->n_sets >= MAX_CLASS_SETS) return -1;
    int k = c->n_sets++;
    c->set_len[k] = n_probs;
    for (int i = 0; i < n_probs; i++) {
        c->set_key[k][i] = probs[i].key;
        c->set_keylen[k][i] = probs[i].keylen;
    }
    return c->last_set = k;
}

/* The code of a TEXT-like token's text (booleans as "1" / "0"); -1 when the table is full. */
static int token_code(Out *o, Column *c, const Token *t) {
    const char *s = t->type == T_TRUE ? "1" : t->type == T_FALSE ? "0" : t->s;
    Py_ssize_t len = t->type == T_TRUE || t->type == T_FALSE ? 1 : t->len;
    if (c->last_code >= 0 && c->last_len == len && memcmp(c->last_s, s, (size_t)len) == 0) return c->last_code;
    int code = text_code(o->texts, s, len);
    if (code >= 0) {
        c->last_s = s;
        c->last_len = len;
        c->last_code = code;
    }
    return code;
}

/* One scanned line (its tokens, doubles and probabilities in w and num) into row o->taken of the
 * columns: 1 taken, 0 left (a table full, an id column beyond 2 GiB), -1 out of memory. No row is
 * written before the line is known to fit, so a line left leaves at most an unused entry in the
 * text or class-list table. Calls no Python API: it runs without the GIL. */
static int commit(Out *o, const Worker *w, const double *num) {
    const Scanner *sc = o->sc;
    Py_ssize_t row = o->taken;
    int code[MAX_NODES / 2];
    int set = -1;
    for (int k = 0; k < sc->n_slots; k++) {
        const Token *t = &w->tok[k];
        Column *c = &o->cols[k];
        switch (sc->slot_kind[k]) {
        case K_ID:
            if (c->flat_len + (size_t)t->len > INT32_MAX) return 0;
            break;
        case K_VERSION:
        case K_OPTTEXT:
            if (t->type == T_ABSENT || t->type == T_NULL) {
                code[k] = sc->slot_kind[k] == K_OPTTEXT ? -1 : text_code(o->texts, sc->unknown_utf8, sc->unknown_len);
                if (code[k] == -1 && sc->slot_kind[k] == K_VERSION) return 0;
                break;
            }
            /* fall through */
        case K_TEXT:
            if ((code[k] = token_code(o, c, t)) < 0) return 0;
            break;
        case K_PROBS:
            if (t->type == T_OBJ && w->n_probs > 0 && (set = class_set(c, w->probs, w->n_probs)) < 0) return 0;
            break;
        }
    }
    for (int k = 0; k < sc->n_slots; k++) {
        const Token *t = &w->tok[k];
        Column *c = &o->cols[k];
        double *v = c->values ? (double *)PyByteArray_AS_STRING(c->values) : NULL;
        switch (sc->slot_kind[k]) {
        case K_ID:
            if (grow(&c->flat, &c->flat_cap, c->flat_len + (size_t)t->len) < 0) return -1;
            memcpy(c->flat + c->flat_len, t->s, (size_t)t->len);
            c->flat_len += (size_t)t->len;
            ((int32_t *)PyByteArray_AS_STRING(c->codes))[row + 1] = (int32_t)c->flat_len;
            ((uint64_t *)v)[row] = stable_id_hash((const unsigned char *)t->s, t->len);
            break;
        case K_TEXT:
        case K_VERSION:
        case K_OPTTEXT:
            ((int32_t *)PyByteArray_AS_STRING(c->codes))[row] = code[k];
            break;
        case K_CONF:
        case K_FEATURE:
            v[row] = num[k];
            break;
        case K_TS:
            v[row] = num[k];
            ((uint8_t *)PyByteArray_AS_STRING(c->codes))[row] = t->type == T_NUM ? 1 : t->type == T_STR ? 2 : 0;
            if (t->type == T_STR) {
                if (grow((char **)&c->spans, &c->spans_cap, (c->n_spans + 1) * sizeof(Span)) < 0) return -1;
                c->spans[c->n_spans++] = (Span){t->s, t->len};
            }
            break;
        case K_PROBS: {
            int32_t *codes = (int32_t *)PyByteArray_AS_STRING(c->codes);
            if (set < 0) { /* absent, null or {}: none */
                v[row] = NAN;
                codes[row] = -1;
                break;
            }
            int np = w->n_probs;
            if (grow(&c->flat, &c->flat_cap, c->flat_len + (size_t)np * sizeof(double)) < 0) return -1;
            double *flat = (double *)(c->flat + c->flat_len);
            double best = w->probs[0].value;
            for (int i = 0; i < np; i++) {
                flat[i] = w->probs[i].value;
                if (w->probs[i].value > best) best = w->probs[i].value;
            }
            c->flat_len += (size_t)np * sizeof(double);
            v[row] = best;
            codes[row] = set;
            break;
        }
        }
    }
    o->taken++;
    return 1;
}

/* Lines lo.. of the block, without the GIL, until the end or a line whose number only CPython's
 * parser reads (returned: the caller scans it again with the GIL). */
static Py_ssize_t scan_lines(Out *o, Worker *w, const char *base, const int64_t *starts, const int64_t *ends,
                             Py_ssize_t lo, Py_ssize_t n, char *mask) {
    double num[MAX_NODES / 2];
    for (Py_ssize_t i = lo; i < n; i++) {
        int st = scan_line(o->sc, w, base + starts[i], base + ends[i], num);
        if (st == -1) return i;
        mask[i] = 0;
        if (st == 1) {
            int r = commit(o, w, num);
            if (r < 0) {
                o->oom = 1;
                return n;
            }
            mask[i] = (char)r;
        }
    }
    return n;
}

/* A bytearray of size bytes (contents unset), or NULL with the exception set. */
static PyObject *raw_bytes(Py_ssize_t size) { return PyByteArray_FromStringAndSize(NULL, size); }

/* The Python objects of the scan's columns (the GIL held): see Scanner.scan's docstring. */
static PyObject *finish(Scanner *sc, Out *o) {
    Py_ssize_t taken = o->taken;
    int ns = sc->n_slots;
    PyObject *out_cols = PyList_New(ns);
    if (out_cols == NULL) return NULL;
    for (int k = 0; k < ns; k++) {
        Column *c = &o->cols[k];
        int kind = sc->slot_kind[k];
        PyObject *list = Py_None, *flat = Py_None;
        Py_INCREF(Py_None);
        Py_INCREF(Py_None);
        if (c->values && PyByteArray_Resize(c->values, taken * 8) < 0) goto fail;
        if (c->codes) {
            Py_ssize_t size = kind == K_ID ? (taken + 1) * 4 : kind == K_TS ? taken : taken * 4;
            if (PyByteArray_Resize(c->codes, size) < 0) goto fail;
        }
        if (kind == K_ID || kind == K_PROBS) {
            Py_SETREF(flat, PyByteArray_FromStringAndSize(c->flat ? c->flat : "", (Py_ssize_t)c->flat_len));
            if (flat == NULL) goto fail;
        }
        if (kind == K_ID) {
            Py_SETREF(list, PyList_New(taken));
            if (list == NULL) goto fail;
            const int32_t *off = (const int32_t *)PyByteArray_AS_STRING(c->codes);
            for (Py_ssize_t i = 0; i < taken; i++) {
                PyObject *s = new_text(c->flat + off[i], off[i + 1] - off[i]);
                if (s == NULL) goto fail;
                PyList_SET_ITEM(list, i, s);
            }
        } else if (kind == K_TS) {
            Py_SETREF(list, PyList_New((Py_ssize_t)c->n_spans));
            if (list == NULL) goto fail;
            for (size_t i = 0; i < c->n_spans; i++) {
                PyObject *s = new_text(c->spans[i].s, c->spans[i].len);
                if (s == NULL) goto fail;
                PyList_SET_ITEM(list, (Py_ssize_t)i, s);
            }
        } else if (kind == K_PROBS) {
            Py_SETREF(list, PyList_New(c->n_sets));
            if (list == NULL) goto fail;
            for (int k2 = 0; k2 < c->n_sets; k2++) {
                PyObject *t = PyTuple_New(c->set_len[k2]);
                if (t == NULL) goto fail;
                PyList_SET_ITEM(list, k2, t);
                for (int i = 0; i < c->set_len[k2]; i++) {
                    PyObject *key = cached_text(sc, c->set_key[k2][i], c->set_keylen[k2][i]);
                    if (key == NULL) goto fail;
                    PyTuple_SET_ITEM(t, i, key);
                }
            }
        }
        PyObject *item = PyTuple_Pack(4, list, c->values ? c->values : Py_None, c->codes ? c->codes : Py_None, flat);
        Py_DECREF(list);
        Py_DECREF(flat);
        if (item == NULL) goto fail_cols;
        PyList_SET_ITEM(out_cols, k, item);
        continue;
    fail:
        Py_XDECREF(list);
        Py_XDECREF(flat);
        goto fail_cols;
    }
    PyObject *texts = PyTuple_New(o->texts->n);
    if (texts == NULL) goto fail_cols;
    for (int i = 0; i < o->texts->n; i++) {
        PyObject *s = cached_text(sc, o->texts->s[i], o->texts->len[i]);
        if (s == NULL) {
            Py_DECREF(texts);
            goto fail_cols;
        }
        PyTuple_SET_ITEM(texts, i, s);
    }
    PyObject *r = Py_BuildValue("(NN)", out_cols, texts);
    return r;
fail_cols:
    Py_DECREF(out_cols);
    return NULL;
}

static PyObject *Scanner_scan(Scanner *sc, PyObject *args) {
    Py_buffer data, starts_buf, ends_buf;
    if (!PyArg_ParseTuple(args, "y*y*y*", &data, &starts_buf, &ends_buf)) return NULL;
    PyObject *result = NULL, *mask = NULL, *cols_texts = NULL;
    int ns = sc->n_slots;
    Out o = {sc, NULL, NULL, 0, 0};
    Worker *workers = NULL;
    Py_ssize_t n = starts_buf.len / (Py_ssize_t)sizeof(int64_t);
    if (ends_buf.len != starts_buf.len) {
        PyErr_SetString(PyExc_ValueError, "starts and ends: int64 buffers of the same length");
        goto done;
    }
    const int64_t *starts = (const int64_t *)starts_buf.buf, *ends = (const int64_t *)ends_buf.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (starts[i] < 0 || ends[i] > data.len || ends[i] < starts[i]) {
            PyErr_SetString(PyExc_ValueError, "a line outside the data");
            goto done;
        }
    }
    o.cols = PyMem_Calloc((size_t)(ns ? ns : 1), sizeof(Column));
    o.texts = PyMem_Malloc(sizeof(Texts));
    workers = PyMem_Calloc(2, sizeof(Worker)); /* one without the GIL, one for lines scanned again with it */
    if (o.cols == NULL || o.texts == NULL || workers == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    o.texts->n = 0;
    memset(o.texts->bucket, 0xff, sizeof(o.texts->bucket));
    if ((mask = raw_bytes(n)) == NULL) goto done;
    for (int k = 0; k < ns; k++) {
        int kind = sc->slot_kind[k];
        Column *c = &o.cols[k];
        c->last_code = c->last_set = -1;
        if (kind == K_CONF || kind == K_FEATURE || kind == K_TS || kind == K_PROBS || kind == K_ID) {
            if ((c->values = raw_bytes(n * 8)) == NULL) goto done;
        }
        Py_ssize_t codes = kind == K_ID ? (n + 1) * 4 : kind == K_TS ? n : n * 4;
        if (kind != K_CONF && kind != K_FEATURE && (c->codes = raw_bytes(codes)) == NULL) goto done;
        if (kind == K_ID) ((int32_t *)PyByteArray_AS_STRING(c->codes))[0] = 0;
    }
    char *m = PyByteArray_AS_STRING(mask);
    const char *base = (const char *)data.buf;
    Worker *again = &workers[1];
    again->allow_slow = 1;
    for (Py_ssize_t i = 0; i < n;) {
        Py_BEGIN_ALLOW_THREADS
        i = scan_lines(&o, &workers[0], base, starts, ends, i, n, m);
        Py_END_ALLOW_THREADS
        if (o.oom) {
            PyErr_NoMemory();
            goto done;
        }
        if (i >= n) break;
        /* a number only CPython's parser reads: this line again, with the GIL */
        double num[MAX_NODES / 2];
        m[i] = 0;
        if (scan_line(sc, again, base + starts[i], base + ends[i], num) == 1) {
            int r = commit(&o, again, num);
            if (r < 0) {
                PyErr_NoMemory();
                goto done;
            }
            m[i] = (char)r;
        }
        i++;
    }
    if ((cols_texts = finish(sc, &o)) == NULL) goto done;
    result = Py_BuildValue("(nOOO)", o.taken, mask, PyTuple_GET_ITEM(cols_texts, 0), PyTuple_GET_ITEM(cols_texts, 1));
done:
    Py_XDECREF(mask);
    Py_XDECREF(cols_texts);
    if (o.cols) free_columns(o.cols, ns);
    PyMem_Free(o.texts);
    PyMem_Free(workers);
    PyBuffer_Release(&data);
    PyBuffer_Release(&starts_buf);
    PyBuffer_Release(&ends_buf);
    return result;
}

static PyMethodDef Scanner_methods[] = {
    {"scan", (PyCFunction)Scanner_scan, METH_VARARGS,
     "scan(data, starts, ends) -> (taken, mask, columns, texts)\n\n"
     "starts/ends: int64 line bounds into data, scanned without the GIL. mask: a bytearray, 1 for\n"
     "each line taken. texts: the distinct texts of the text slots. columns: per slot, over the\n"
     "taken lines, (list, values, codes, flat):\n"
     "  ID        (str per row, uint64 hashes, int32 offsets (n + 1), the ids' UTF-8 bytes)\n"
     "  TEXT-like (None, None, int32 index into texts (-1: None), None)\n"
     "  CONF, FEATURE (None, doubles, None, None)\n"
     "  TS        (str per textual row, doubles, uint8 kinds (0 absent, 1 number, 2 text), None)\n"
     "  PROBS     (class tuples met, doubles (row max), int32 class tuple (-1 none), all values)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "exporter.ingest._linescan.Scanner",
    .tp_basicsize = sizeof(Scanner),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Scanner(paths, kinds, unknown): JSON lines -> the columns of the mapped paths.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Scanner_init,
    .tp_dealloc = (destructor)Scanner_dealloc,
    .tp_methods = Scanner_methods,
};

static struct PyModuleDef linescan_module = {
    PyModuleDef_HEAD_INIT, "_linescan", "JSON lines -> columns of the mapped fields (see the C source's header).",
    -1, NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__linescan(void) {
    for (int c = 0; c < 0x20; c++) STOP[c] = 1;
    STOP['"'] = STOP['\\'] = 1;
    if (PyType_Ready(&ScannerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&linescan_module);
    if (m == NULL) return NULL;
    Py_INCREF(&ScannerType);
    if (PyModule_AddObject(m, "Scanner", (PyObject *)&ScannerType) < 0) {
        Py_DECREF(&ScannerType);
        Py_DECREF(m);
        return NULL;
    }
    static const char *names[K_COUNT] = {"K_ID", "K_TEXT", "K_VERSION", "K_OPTTEXT",
                                         "K_CONF", "K_PROBS", "K_TS", "K_FEATURE"};
    for (int k = 0; k < K_COUNT; k++) {
        if (PyModule_AddIntConstant(m, names[k], k) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
