/*
 * _kernels: hot loops of the join and drift stages, one plain C pass per key or value.
 *
 * Why it exists: the numpy versions of these loops (exporter/core/id_table.py, the probe and the
 * insert of the join's hash table; exporter/core/drift_features.py, a numeric feature's slot and
 * PSI bin) are vectorised rounds: many numpy calls per batch, each reading the table or the
 * reference values at random and building temporaries. Here each key or value is handled once,
 * start to end. The numpy code stays: it is the fallback where this module was not built
 * (setup.py builds it with optional=True) and the reference the tests compare this one with.
 *
 * The callers check dtypes and contiguity (np.ascontiguousarray); this file checks the item size
 * and type letter of every buffer again, so a wrong array fails loudly instead of being misread.
 * Nothing here allocates a Python object per element. The loops run without the GIL, so the
 * pipeline's parsing thread (global.ingest_threads: 2) runs meanwhile: they touch only the
 * buffers, which the join owns and only the pipeline thread uses.
 *
 *   probe(slots, tags, h, start, rows_out, slots_out)
 *       Per query i: from slot start[i] (None: the home slot h[i] % size), linear probing; an
 *       EMPTY slot (-1) ends the search (-1, -1); a TOMB (-2) or another key's slot is passed;
 *       the first live slot whose tag is h[i] >> 48 is the candidate (its row, that slot). The
 *       caller checks the candidate's id and probes on from the next slot where it was another.
 *   insert(slots, tags, h, rows) -> int
 *       Per key, in order: the first slot < 0 from the home slot gets the row and the tag.
 *       Returns how many of those slots were EMPTY (a reused TOMB is counted in ``used`` already).
 *   slots_bins(uniq, edges, lut, split, guide, values, slots, bins_out, slots_given)
 *       uniq: the distinct reference values and a NaN after them (FeatureModel._unique_padded).
 *       Per value v: b = searchsorted(uniq, v, side="left"); slot 2b + (uniq[b] == v) (written
 *       to slots, or read from it when slots_given); PSI bin searchsorted(edges, v, side="left")
 *       as int8: lut[slot] (FeatureModel._bin_of_slot), or for a split slot a count of the edges
 *       below v (edges ascending). bins_out may be None. guide: None or (lo, scale, table, steps)
 *       of FeatureModel._guide, which narrows b's search to one cell.
 *       numpy's order: NaN sorts after everything (and equals no value in the slot test);
 *       -0.0 and +0.0 are equal; the binary search is numpy's own (first i with not a[i] < v).
 *   searchsorted_right(a, q, out)
 *       out[i] = np.searchsorted(a, q[i], side="right"), for ascending uint64 a and q (the joined
 *       ids' segments and a batch's sorted hashes): each answer gallops on from the one before.
 *   merge_sorted(a, a_off, b, b_off, shift, out, out_off)
 *       Two ascending uint64 runs with their uint32 offsets as one (b's offsets + shift); equal
 *       hashes keep a's first, where np.searchsorted(a, b, side="right") puts b's.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define EMPTY (-1)
#define TOMB (-2)

/* Get a C-contiguous buffer of `itemsize`-byte items whose struct letter is one of `letters`. */
static int get_buf(PyObject *obj, Py_buffer *view, const char *name, Py_ssize_t itemsize, const char *letters,
                   int writable) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    if (view->itemsize != itemsize || f[0] == '\0' || f[1] != '\0' || strchr(letters, f[0]) == NULL) {
        PyErr_Format(PyExc_TypeError, "%s: expected a contiguous array of %zd-byte items (%s), got format %s",
                     name, itemsize, letters, view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

#define I64 "lq"
#define U64 "LQ"
#define I32 "i"
#define U16 "H"
#define F64 "d"
#define I8 "b"

static PyObject *k_probe(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_slots, *o_tags, *o_h, *o_start, *o_rows, *o_at;
    if (!PyArg_ParseTuple(args, "OOOOOO", &o_slots, &o_tags, &o_h, &o_start, &o_rows, &o_at)) return NULL;
    Py_buffer b_slots, b_tags, b_h, b_start, b_rows, b_at;
    int have_start = o_start != Py_None;
    if (get_buf(o_slots, &b_slots, "slots", 4, I32, 0) < 0) return NULL;
    if (get_buf(o_tags, &b_tags, "tags", 2, U16, 0) < 0) goto e1;
    if (get_buf(o_h, &b_h, "h", 8, U64, 0) < 0) goto e2;
    if (have_start && get_buf(o_start, &b_start, "start", 8, I64, 0) < 0) goto e3;
    if (get_buf(o_rows, &b_rows, "rows_out", 8, I64, 1) < 0) goto e4;
    if (get_buf(o_at, &b_at, "slots_out", 8, I64, 1) < 0) goto e5;
    Py_ssize_t size = b_slots.len / 4, k = b_h.len / 8;
    if (b_tags.len / 2 != size || size <= 0 || b_rows.len / 8 != k || b_at.len / 8 != k ||
        (have_start && b_start.len / 8 != k)) {
        PyErr_SetString(PyExc_ValueError, "probe: array lengths do not match");
        goto e6;
    }
    const int32_t *slots = b_slots.buf;
    const uint16_t *tags = b_tags.buf;
    const uint64_t *h = b_h.buf;
    const int64_t *start = have_start ? b_start.buf : NULL;
    int64_t *rows = b_rows.buf, *at = b_at.buf;
    Py_BEGIN_ALLOW_THREADS  /* buffers only: the parsing thread runs meanwhile */
    for (Py_ssize_t i = 0; i < k; i++) {
        int64_t p;
        if (start) {
            p = start[i] % size;
            if (p < 0) p += size;
        } else {
            p = (int64_t)(h[i] % (uint64_t)size);
        }
        uint16_t tag = (uint16_t)(h[i] >> 48);
        int64_t row = -1, slot = -1;
        for (Py_ssize_t step = 0; step < size; step++) {  /* a full circle: no EMPTY slot left, not found */
            int32_t s = slots[p];
            if (s == EMPTY) break;
            if (s >= 0 && tags[p] == tag) {
                row = s;
                slot = p;
                break;
            }
            if (++p == size) p = 0;
        }
        rows[i] = row;
        at[i] = slot;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&b_at);
    PyBuffer_Release(&b_rows);
    if (have_start) PyBuffer_Release(&b_start);
    PyBuffer_Release(&b_h);
    PyBuffer_Release(&b_tags);
    PyBuffer_Release(&b_slots);
    Py_RETURN_NONE;
e6: PyBuffer_Release(&b_at);
e5: PyBuffer_Release(&b_rows);
e4: if (have_start) PyBuffer_Release(&b_start);
e3: PyBuffer_Release(&b_h);
e2: PyBuffer_Release(&b_tags);
e1: PyBuffer_Release(&b_slots);
    return NULL;
}

static PyObject *k_insert(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_slots, *o_tags, *o_h, *o_rows;
    if (!PyArg_ParseTuple(args, "OOOO", &o_slots, &o_tags, &o_h, &o_rows)) return NULL;
    Py_buffer b_slots, b_tags, b_h, b_rows;
    PyObject *result = NULL;
    if (get_buf(o_slots, &b_slots, "slots", 4, I32, 1) < 0) return NULL;
    if (get_buf(o_tags, &b_tags, "tags", 2, U16, 1) < 0) goto e1;
    if (get_buf(o_h, &b_h, "h", 8, U64, 0) < 0) goto e2;
    if (get_buf(o_rows, &b_rows, "rows", 8, I64, 0) < 0) goto e3;
    Py_ssize_t size = b_slots.len / 4, k = b_h.len / 8;
    if (b_tags.len / 2 != size || size <= 0 || b_rows.len / 8 != k) {
        PyErr_SetString(PyExc_ValueError, "insert: array lengths do not match");
        goto e4;
    }
    int32_t *slots = b_slots.buf;
    uint16_t *tags = b_tags.buf;
    const uint64_t *h = b_h.buf;
    const int64_t *rows = b_rows.buf;
    long long empties = 0;
    int full = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < k && !full; i++) {
        int64_t p = (int64_t)(h[i] % (uint64_t)size);
        Py_ssize_t step = 0;
        while (slots[p] >= 0 && step < size) {
            if (++p == size) p = 0;
            step++;
        }
        if (step == size) {
            full = 1;
            break;
        }
        if (slots[p] == EMPTY) empties++;
        slots[p] = (int32_t)rows[i];
        tags[p] = (uint16_t)(h[i] >> 48);
    }
    Py_END_ALLOW_THREADS
    if (full) {  /* the caller makes room first (needs_room); this is a bug, not a state */
        PyErr_SetString(PyExc_RuntimeError, "insert: the table has no free slot");
        goto e4;
    }
    result = PyLong_FromLongLong(empties);
e4: PyBuffer_Release(&b_rows);
e3: PyBuffer_Release(&b_h);
e2: PyBuffer_Release(&b_tags);
e1: PyBuffer_Release(&b_slots);
    return result;
}

/* numpy's order for doubles: a < b, and NaN after every number (its LT for floats). Bitwise
 * operators, not && and ||: no branch to mispredict. */
static inline int np_less(double a, double b) { return (a < b) | ((b != b) & (a == a)); }

/* searchsorted(a, v, side="left") within a[lo:hi] (ascending in numpy's order): the first i with
 * not a[i] < v, or hi. Branch-free: the window halves each step and only its start moves (the
 * result is unique for sorted input, so it is numpy's, whatever the order of comparisons). */
static inline Py_ssize_t left_in(const double *a, Py_ssize_t lo, Py_ssize_t hi, double v) {
    Py_ssize_t n = hi - lo;
    if (n <= 0) return lo;
    const double *base = a + lo;
    while (n > 1) {
        Py_ssize_t half = n >> 1;
        base = np_less(base[half], v) ? base + half : base;
        n -= half;
    }
    return (base - a) + np_less(*base, v);
}

/* The PSI bin of v: searchsorted(edges, v, side="left"), edges ascending: the count of edges
 * below v (cheaper than a search of ~9). */
static inline int8_t bin_of(const double *edges, Py_ssize_t n_edges, double v) {
    int below = 0;
    for (Py_ssize_t j = 0; j < n_edges; j++) below += np_less(edges[j], v);
    return (int8_t)below;
}

static PyObject *k_slots_bins(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_uniq, *o_edges, *o_lut, *o_split, *o_guide, *o_values, *o_slots, *o_bins;
    int slots_given;
    if (!PyArg_ParseTuple(args, "OOOOOOOOp", &o_uniq, &o_edges, &o_lut, &o_split, &o_guide, &o_values, &o_slots,
                          &o_bins, &slots_given))
        return NULL;
    enum { UNIQ, EDGES, LUT, SPLIT, TABLE, VALUES, SLOTS, BINS, NBUF };
    Py_buffer buf[NBUF];
    int held[NBUF] = {0};
    PyObject *result = NULL;
    double lo = 0.0, scale = 0.0;
    PyObject *o_table = NULL;
    Py_ssize_t steps = 0;
    int have_guide = o_guide != Py_None, have_bins = o_bins != Py_None;
    if (have_guide && !PyArg_ParseTuple(o_guide, "ddOn", &lo, &scale, &o_table, &steps)) return NULL;
#define GET(i, obj, name, size, letters, w) \
    do { \
        if (get_buf(obj, &buf[i], name, size, letters, w) < 0) goto out; \
        held[i] = 1; \
    } while (0)
    GET(UNIQ, o_uniq, "uniq", 8, F64, 0);
    GET(EDGES, o_edges, "edges", 8, F64, 0);
    GET(LUT, o_lut, "lut", 1, I8, 0);
    GET(SPLIT, o_split, "split", 1, "?", 0);
    if (have_guide) GET(TABLE, o_table, "guide", 4, I32, 0);
    GET(VALUES, o_values, "values", 8, F64, 0);
    GET(SLOTS, o_slots, "slots", 8, I64, !slots_given);
    if (have_bins) GET(BINS, o_bins, "bins_out", 1, I8, 1);
#undef GET
    Py_ssize_t m = buf[UNIQ].len / 8 - 1, n_edges = buf[EDGES].len / 8, n = buf[VALUES].len / 8;
    Py_ssize_t cells = have_guide ? buf[TABLE].len / 4 - 1 : 0;
    if (m < 0 || buf[LUT].len != 2 * m + 1 || buf[SPLIT].len != 2 * m + 1 || buf[SLOTS].len / 8 != n ||
        (have_bins && buf[BINS].len != n) || (have_guide && cells < 1)) {
        PyErr_SetString(PyExc_ValueError, "slots_bins: array lengths do not match");
        goto out;
    }
    const double *uniq = buf[UNIQ].buf, *edges = buf[EDGES].buf, *values = buf[VALUES].buf;
    const int8_t *lut = buf[LUT].buf;
    const uint8_t *split = buf[SPLIT].buf;
    const int32_t *table = have_guide ? buf[TABLE].buf : NULL;
    int64_t *slots = buf[SLOTS].buf;
    int8_t *bins = have_bins ? buf[BINS].buf : NULL;
    if (slots_given) {  /* bins from the slots the caller has: a slot's bin, or a search in a split slot */
        int bad = 0;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            int64_t s = slots[i];
            if (s < 0 || s > 2 * m) {
                bad = 1;
                break;
            }
            if (bins) bins[i] = split[s] ? bin_of(edges, n_edges, values[i]) : lut[s];
        }
        Py_END_ALLOW_THREADS
        if (bad) {
            PyErr_SetString(PyExc_ValueError, "slots_bins: a slot out of range");
            goto out;
        }
        result = Py_None;
        Py_INCREF(result);
        goto out;
    }
    double top = (double)(cells - 1);
    int lifts = 0;  /* 2**lifts - 1 >= steps: the most distinct values in one guide cell */
    while (lifts < 62 && ((Py_ssize_t)1 << lifts) - 1 < steps) lifts++;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        double v = values[i];
        Py_ssize_t b;
        if (table && v == v) {
            /* the guide cell, by the same operations as FeatureModel._cells: every distinct value
             * of a lower cell is below v, every one of a higher cell above it */
            double t = (v - lo) * scale;
            t = t < 0.0 ? 0.0 : t;
            t = t > top ? top : t;
            Py_ssize_t c = (Py_ssize_t)t;
            /* the values of the cell below v, counted by binary lifting over a window of
             * 2**lifts - 1 from the cell's start: the same number of steps for every value (no
             * branch to mispredict); past the cell every value is above v, and an index past
             * the end reads the NaN at uniq[m], which is below nothing */
            b = table[c];
            for (Py_ssize_t up = ((Py_ssize_t)1 << lifts) >> 1; up > 0; up >>= 1) {
                Py_ssize_t j = b + up - 1;
                j = j < m ? j : m;
                b = uniq[j] < v ? b + up : b;
            }
        } else {
            b = left_in(uniq, 0, m, v);
        }
        int64_t s = 2 * (int64_t)b + (uniq[b] == v);  /* uniq[m] is NaN, equal to nothing */
        slots[i] = s;
        if (bins) bins[i] = split[s] ? bin_of(edges, n_edges, v) : lut[s];
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
out:
    for (int i = NBUF - 1; i >= 0; i--)
        if (held[i]) PyBuffer_Release(&buf[i]);
    return result;
}

/* out[i] = np.searchsorted(a, q[i], side="right") for ascending a and q: each answer is found by
 * galloping from the one before, so a batch of sorted queries walks a large segment once, near
 * where it last looked, instead of starting every binary search from its ends. */
static PyObject *k_searchsorted_right(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o[3];
    if (!PyArg_ParseTuple(args, "OOO", &o[0], &o[1], &o[2])) return NULL;
    static const char *names[3] = {"a", "q", "out"};
    Py_buffer buf[3];
    int held = 0;
    PyObject *result = NULL;
    for (; held < 3; held++) {
        if (get_buf(o[held], &buf[held], names[held], 8, held < 2 ? U64 : I64, held == 2) < 0) goto out;
    }
    Py_ssize_t n = buf[0].len / 8, k = buf[1].len / 8;
    if (buf[2].len / 8 != k) {
        PyErr_SetString(PyExc_ValueError, "searchsorted_right: out and q differ in length");
        goto out;
    }
    const uint64_t *a = buf[0].buf, *q = buf[1].buf;
    int64_t *found = buf[2].buf;
    Py_BEGIN_ALLOW_THREADS  /* buffers only: the parsing thread runs meanwhile */
    Py_ssize_t lo = 0;  /* every a[i] with i < lo is <= the current query */
    for (Py_ssize_t i = 0; i < k; i++) {
        uint64_t v = q[i];
        Py_ssize_t l = lo, r = n, step = 1;
        for (;;) {  /* gallop: the answer lies in [l, r] */
            Py_ssize_t p = l + step - 1;
            if (p >= n) break;
            if (a[p] > v) {
                r = p;
                break;
            }
            l = p + 1;
            step *= 2;
        }
        while (l < r) {
            Py_ssize_t m = l + (r - l) / 2;
            if (a[m] <= v) l = m + 1;
            else r = m;
        }
        found[i] = l;
        lo = l;
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
out:
    while (held > 0) PyBuffer_Release(&buf[--held]);
    return result;
}

/* merge_sorted(a, a_off, b, b_off, shift, out, out_off): the two sorted runs of hashes (with their
 * uint32 offsets) as one, b's offsets raised by shift; equal hashes keep a's before b's, as
 * np.searchsorted(a, b, side="right") places them. One linear pass. */
static PyObject *k_merge_sorted(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o[6];
    unsigned long long shift;
    if (!PyArg_ParseTuple(args, "OOOOKOO", &o[0], &o[1], &o[2], &o[3], &shift, &o[4], &o[5])) return NULL;
    static const char *names[6] = {"a", "a_off", "b", "b_off", "out", "out_off"};
    Py_buffer buf[6];
    int held = 0;
    PyObject *result = NULL;
    for (; held < 6; held++) {
        int is_hash = held == 0 || held == 2 || held == 4;
        if (get_buf(o[held], &buf[held], names[held], is_hash ? 8 : 4, is_hash ? U64 : "I", held >= 4) < 0) goto out;
    }
    Py_ssize_t na = buf[0].len / 8, nb = buf[2].len / 8;
    if (buf[1].len / 4 != na || buf[3].len / 4 != nb || buf[4].len / 8 != na + nb || buf[5].len / 4 != na + nb) {
        PyErr_SetString(PyExc_ValueError, "merge_sorted: array lengths do not match");
        goto out;
    }
    const uint64_t *a = buf[0].buf, *b = buf[2].buf;
    const uint32_t *ao = buf[1].buf, *bo = buf[3].buf;
    uint64_t *oh = buf[4].buf;
    uint32_t *oo = buf[5].buf;
    Py_BEGIN_ALLOW_THREADS  /* buffers only: the parsing thread runs meanwhile */
    Py_ssize_t i = 0, j = 0, k = 0;
    while (i < na && j < nb) {
        if (b[j] < a[i]) {
            oh[k] = b[j];
            oo[k++] = bo[j++] + (uint32_t)shift;
        } else {
            oh[k] = a[i];
            oo[k++] = ao[i++];
        }
    }
    for (; i < na; i++, k++) {
        oh[k] = a[i];
        oo[k] = ao[i];
    }
    for (; j < nb; j++, k++) {
        oh[k] = b[j];
        oo[k] = bo[j] + (uint32_t)shift;
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
out:
    while (held > 0) PyBuffer_Release(&buf[--held]);
    return result;
}

static PyMethodDef kernels_methods[] = {
    {"merge_sorted", k_merge_sorted, METH_VARARGS,
     "merge_sorted(a, a_off, b, b_off, shift, out, out_off): two sorted hash runs as one."},
    {"searchsorted_right", k_searchsorted_right, METH_VARARGS,
     "searchsorted_right(a, q, out): np.searchsorted(a, q, side='right') for ascending uint64 a and q."},
    {"probe", k_probe, METH_VARARGS,
     "probe(slots, tags, h, start, rows_out, slots_out): first candidate (row, slot) per query, or -1."},
    {"insert", k_insert, METH_VARARGS,
     "insert(slots, tags, h, rows) -> int: place keys in order; returns the EMPTY slots taken."},
    {"slots_bins", k_slots_bins, METH_VARARGS,
     "slots_bins(uniq, edges, guide, values, slots_out, bins_out): a numeric feature's slots and PSI bins."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef kernels_module = {
    PyModuleDef_HEAD_INIT, "_kernels", "Hash-table probe/insert and drift slots in C (see the C source's header).",
    -1, kernels_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&kernels_module); }
