/*
 * _columns: whole-column helpers of ingest, in C and without the GIL, so the pipeline thread runs
 * meanwhile (the pipeline parses on a thread of its own):
 *
 *   line_bounds(data)                                the start and end of every non-empty line
 *   line_guards(data, starts, ends, max_line_bytes)  the block parser's line guards
 *   stable_hashes(offsets, data)                     exporter.ingest.ids.stable_id_hashes
 *   first_by_hash(h)                                 the first row of every row's hash
 *
 * Each is the twin of numpy code that stays as the fallback where this module was not built
 * (setup.py builds it with optional=True) and as the reference the tests compare it with
 * (exporter.ingest.compiled_columns says which is in use).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_ingest_c.h"

#define IS_DIGIT(c) ((unsigned)((c) - '0') < 10u)

/* ---- line bounds and guards: the block parser's first steps, without the GIL ------------------- */

#define LONG_LINE 2000   /* lines longer than this are checked for deep nesting and huge integers */
#define MAX_BRACKETS 400 /* far below json's recursion limit (~1000 frames) */
#define HUGE_INT 4000    /* int() refuses more than 4300 digits */

/* Whether s is UTF-8 as utf8_ok says, eight ASCII bytes at a time where it can. */
static int utf8_line_ok(const char *s, Py_ssize_t len) {
    Py_ssize_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t word;
        memcpy(&word, s + i, 8);
        if (word & 0x8080808080808080ULL) break;
    }
    return i >= len || utf8_ok(s + i, len - i);
}

/* A line the decoders must not see: see block_parser's module docstring ("Line guards"). */
static int suspect_line(const char *s, Py_ssize_t len, Py_ssize_t max_line) {
    if (len == 0 || len > max_line || s[0] != '{' || s[len - 1] != '}') return 1;
    if (len > LONG_LINE) {
        Py_ssize_t brackets = 0, run = 0;
        for (Py_ssize_t i = 0; i < len; i++) {
            char c = s[i];
            brackets += c == '[' || c == '{';
            run = IS_DIGIT(c) ? run + 1 : 0;
            if (brackets > MAX_BRACKETS || run >= HUGE_INT) return 1;
        }
    }
    return !utf8_line_ok(s, len);
}

static PyObject *columns_line_bounds(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data)) return NULL;
    const char *p = (const char *)data.buf, *end = p + data.len;
    Py_ssize_t n = 0;
    PyObject *starts = NULL, *ends = NULL, *result = NULL;
    Py_BEGIN_ALLOW_THREADS
    for (const char *s = p; s < end;) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *e = nl ? nl : end;
        n += e > s;
        s = e + 1;
    }
    Py_END_ALLOW_THREADS
    if ((starts = PyByteArray_FromStringAndSize(NULL, n * 8)) == NULL ||
        (ends = PyByteArray_FromStringAndSize(NULL, n * 8)) == NULL)
        goto done;
    int64_t *st = (int64_t *)PyByteArray_AS_STRING(starts), *en = (int64_t *)PyByteArray_AS_STRING(ends);
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t k = 0;
    for (const char *s = p; s < end;) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *e = nl ? nl : end;
        if (e > s) {
            st[k] = s - p;
            en[k++] = e - p;
        }
        s = e + 1;
    }
    Py_END_ALLOW_THREADS
    result = PyTuple_Pack(2, starts, ends);
done:
    Py_XDECREF(starts);
    Py_XDECREF(ends);
    PyBuffer_Release(&data);
    return result;
}

static PyObject *columns_line_guards(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data, starts_buf, ends_buf;
    Py_ssize_t max_line;
    if (!PyArg_ParseTuple(args, "y*y*y*n", &data, &starts_buf, &ends_buf, &max_line)) return NULL;
    PyObject *mask = NULL;
    Py_ssize_t n = starts_buf.len / (Py_ssize_t)sizeof(int64_t);
    const int64_t *starts = (const int64_t *)starts_buf.buf, *ends = (const int64_t *)ends_buf.buf;
    if (ends_buf.len != starts_buf.len) {
        PyErr_SetString(PyExc_ValueError, "starts and ends: int64 buffers of the same length");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (starts[i] < 0 || ends[i] > data.len || ends[i] < starts[i]) {
            PyErr_SetString(PyExc_ValueError, "a line outside the data");
            goto done;
        }
    }
    if ((mask = PyByteArray_FromStringAndSize(NULL, n)) == NULL) goto done;
    char *m = PyByteArray_AS_STRING(mask);
    const char *base = (const char *)data.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) m[i] = (char)suspect_line(base + starts[i], ends[i] - starts[i], max_line);
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&starts_buf);
    PyBuffer_Release(&ends_buf);
    return mask;
}

static PyObject *columns_stable_hashes(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer offsets_buf, data;
    if (!PyArg_ParseTuple(args, "y*y*", &offsets_buf, &data)) return NULL;
    PyObject *out = NULL;
    Py_ssize_t n = offsets_buf.len / (Py_ssize_t)sizeof(int64_t) - 1;
    const int64_t *off = (const int64_t *)offsets_buf.buf;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "offsets: int64, one more than the ids");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (off[i] < 0 || off[i + 1] < off[i] || off[i + 1] > data.len) {
            PyErr_SetString(PyExc_ValueError, "an id outside the data");
            goto done;
        }
    }
    if ((out = PyByteArray_FromStringAndSize(NULL, n * 8)) == NULL) goto done;
    uint64_t *h = (uint64_t *)PyByteArray_AS_STRING(out);
    const unsigned char *base = (const unsigned char *)data.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) h[i] = stable_id_hash(base + off[i], off[i + 1] - off[i]);
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&offsets_buf);
    PyBuffer_Release(&data);
    return out;
}

/* first_by_hash: which rows hold the first occurrence of their hash, and where that first row is;
 * an open-addressing table of the rows seen, twice the rows in size, without the GIL. */
static PyObject *columns_first_by_hash(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer h_buf;
    if (!PyArg_ParseTuple(args, "y*", &h_buf)) return NULL;
    PyObject *first = NULL, *first_row = NULL, *result = NULL;
    Py_ssize_t n = h_buf.len / 8;
    size_t size = 16;
    while (size < 2 * (size_t)n) size *= 2;
    int64_t *table = malloc(size * sizeof(int64_t));
    if (table == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if ((first = PyByteArray_FromStringAndSize(NULL, n)) == NULL ||
        (first_row = PyByteArray_FromStringAndSize(NULL, n * 8)) == NULL)
        goto done;
    const uint64_t *h = (const uint64_t *)h_buf.buf;
    char *f = PyByteArray_AS_STRING(first);
    int64_t *fr = (int64_t *)PyByteArray_AS_STRING(first_row);
    Py_BEGIN_ALLOW_THREADS
    memset(table, 0xff, size * sizeof(int64_t)); /* -1: empty */
    for (Py_ssize_t i = 0; i < n; i++) {
        size_t at = (size_t)(mix64(h[i]) & (size - 1));
        for (;; at = (at + 1) & (size - 1)) {
            int64_t row = table[at];
            if (row < 0) {
                table[at] = i;
                f[i] = 1;
                fr[i] = i;
                break;
            }
            if (h[row] == h[i]) {
                f[i] = 0;
                fr[i] = row;
                break;
            }
        }
    }
    Py_END_ALLOW_THREADS
    result = PyTuple_Pack(2, first, first_row);
done:
    free(table);
    Py_XDECREF(first);
    Py_XDECREF(first_row);
    PyBuffer_Release(&h_buf);
    return result;
}

static PyMethodDef columns_functions[] = {
    {"first_by_hash", columns_first_by_hash, METH_VARARGS,
     "first_by_hash(h) -> (first, first_row)\n\n"
     "uint64 hashes: a bytearray, 1 where a row's hash has not come before; int64 bytes, the row\n"
     "where each row's hash first came."},
    {"stable_hashes", columns_stable_hashes, METH_VARARGS,
     "stable_hashes(offsets, data) -> bytearray\n\n"
     "uint64 exporter.ingest.ids.stable_id_hashes of the ids data[offsets[i]:offsets[i + 1]]\n"
     "(offsets: int64, one more than the ids), without the GIL."},
    {"line_bounds", columns_line_bounds, METH_VARARGS,
     "line_bounds(data) -> (starts, ends)\n\n"
     "int64 bytes: the start and end (exclusive) of every non-empty line; a final newline is optional."},
    {"line_guards", columns_line_guards, METH_VARARGS,
     "line_guards(data, starts, ends, max_line_bytes) -> bytearray\n\n"
     "1 for each line the decoders must not see: empty, over max_line_bytes, not from '{' to '}',\n"
     "long and deeply nested or holding a huge integer, or not UTF-8."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef columns_module = {
    PyModuleDef_HEAD_INIT, "_columns", "Whole-column helpers of ingest without the GIL (see the C source's header).",
    -1, columns_functions, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__columns(void) { return PyModule_Create(&columns_module); }
