/*
 * ladon_robot._rans: a 64-bit rANS encoder whose output is byte-for-byte the output of compressai 1.2.x's
 * RansEncoder.encode_with_indexes (16-bit quantized CDFs, 4-bit bypass coding for out-of-range values).
 *
 * Written for Ladon from the published algorithm (F. Giesen's 64-bit rANS with 32-bit renormalisation words;
 * compressai's symbol/bypass layout). Plain C99 and the CPython C API only, so it builds with any C compiler
 * (x86_64, aarch64) and needs no pybind11, cffi or Cython.
 *
 * encode(symbols, indexes, cdfs, cdf_lengths, offsets) -> bytes
 *   symbols, indexes: 1-D int32 buffers of the same length (C-contiguous)
 *   cdfs:             2-D int32 buffer (channels x max_length), row c valid up to cdf_lengths[c]
 *   cdf_lengths, offsets: 1-D int32 buffers with one entry per CDF row
 *
 * Every input is validated before anything is coded (ValueError with the offending position); compressai only
 * asserts in debug builds. Memory: 2 x uint32 per coded rANS step, at most 1 + 3 + 7 = 11 steps per symbol
 * (|value| < 2^28 so at most 7 raw nibbles); the exact count is computed first, so nothing grows unbounded.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION 16u
#define BYPASS_BITS 4u
#define MAX_BYPASS_VAL ((1u << BYPASS_BITS) - 1u)
#define RANS_L (1ull << 31)
/* compressai shifts a uint32 by 4*n_bypass while counting nibbles; from 2^28 on that shift reaches 32 (undefined
 * behaviour in C++), so raw bypass values must stay below 2^28. */
#define MAX_RAW_VALUE ((1u << 28) - 1u)

typedef struct {
    uint32_t start;
    uint32_t freq; /* 0 marks a bypass step; start then holds the 4-bit value */
} step_t;

static int get_buffer(PyObject *obj, Py_buffer *view, int ndim, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        return -1;
    }
    if (view->itemsize != 4 || view->format == NULL ||
        !(strcmp(view->format, "i") == 0 || strcmp(view->format, "<i") == 0 || strcmp(view->format, "=i") == 0)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int32 buffer (got format '%s', itemsize %zd)", name,
                     view->format ? view->format : "?", view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    if (view->ndim != ndim) {
        PyErr_Format(PyExc_ValueError, "%s must have %d dimension(s), got %d", name, ndim, view->ndim);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Number of rANS steps for one symbol and its mapped value / raw bypass value; -1 on error (exception set). */
static inline int symbol_steps(int32_t symbol, int32_t offset, int32_t max_value, int32_t *value_out,
                               uint32_t *raw_out, Py_ssize_t i) {
    int64_t value = (int64_t)symbol - (int64_t)offset;
    uint64_t raw = 0;
    if (value < 0) {
        raw = (uint64_t)(-2 * value - 1);
        value = max_value;
    } else if (value >= max_value) {
        raw = (uint64_t)(2 * (value - max_value));
        value = max_value;
    }
    if (raw > MAX_RAW_VALUE) {
        PyErr_Format(PyExc_OverflowError,
                     "symbol %zd: value %d is too far outside its CDF (bypass value %llu >= 2^28; compressai's "
                     "coder is undefined there)", i, symbol, (unsigned long long)raw);
        return -1;
    }
    *value_out = (int32_t)value;
    *raw_out = (uint32_t)raw;
    if (value != max_value) {
        return 1;
    }
    int n_bypass = 0;
    while ((raw >> (n_bypass * BYPASS_BITS)) != 0) {
        ++n_bypass;
    }
    return 1 + n_bypass / (int)MAX_BYPASS_VAL + 1 + n_bypass;
}

static PyObject *rans_encode(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_sym, *o_idx, *o_cdf, *o_len, *o_off;
    if (!PyArg_ParseTuple(args, "OOOOO:encode", &o_sym, &o_idx, &o_cdf, &o_len, &o_off)) {
        return NULL;
    }
    Py_buffer b_sym, b_idx, b_cdf, b_len, b_off;
    PyObject *result = NULL;
    step_t *steps = NULL;
    uint32_t *out = NULL;
    if (get_buffer(o_sym, &b_sym, 1, "symbols") != 0) return NULL;
    if (get_buffer(o_idx, &b_idx, 1, "indexes") != 0) goto fail_sym;
    if (get_buffer(o_cdf, &b_cdf, 2, "cdfs") != 0) goto fail_idx;
    if (get_buffer(o_len, &b_len, 1, "cdf_lengths") != 0) goto fail_cdf;
    if (get_buffer(o_off, &b_off, 1, "offsets") != 0) goto fail_len;

    const int32_t *sym = (const int32_t *)b_sym.buf;
    const int32_t *idx = (const int32_t *)b_idx.buf;
    const int32_t *cdf = (const int32_t *)b_cdf.buf;
    const int32_t *len = (const int32_t *)b_len.buf;
    const int32_t *off = (const int32_t *)b_off.buf;
    const Py_ssize_t n = b_sym.shape[0];
    const Py_ssize_t rows = b_cdf.shape[0];
    const Py_ssize_t row_len = b_cdf.shape[1];

    if (b_idx.shape[0] != n) {
        PyErr_Format(PyExc_ValueError, "symbols and indexes differ in length (%zd vs %zd)", n, b_idx.shape[0]);
        goto done;
    }
    if (b_len.shape[0] != rows || b_off.shape[0] != rows) {
        PyErr_Format(PyExc_ValueError, "cdfs has %zd rows but cdf_lengths has %zd and offsets %zd", rows,
                     b_len.shape[0], b_off.shape[0]);
        goto done;
    }
    /* Validate every CDF row: 0 = cdf[0] < cdf[1] < ... < cdf[len-1] = 2^16, at least 3 entries (one symbol plus
     * the bypass sentinel; compressai's tables always have the sentinel, and 2 entries would give frequency 2^16). */
    for (Py_ssize_t r = 0; r < rows; ++r) {
        const int32_t l = len[r];
        const int32_t *row = cdf + r * row_len;
        if (l < 3 || l > row_len) {
            PyErr_Format(PyExc_ValueError, "cdf row %zd: length %d outside [3, %zd]", r, l, row_len);
            goto done;
        }
        if (row[0] != 0 || row[l - 1] != (1 << PRECISION)) {
            PyErr_Format(PyExc_ValueError, "cdf row %zd must start at 0 and end at 65536 (got %d ... %d)", r, row[0],
                         row[l - 1]);
            goto done;
        }
        for (int32_t j = 0; j + 1 < l; ++j) {
            if (row[j + 1] <= row[j]) {
                PyErr_Format(PyExc_ValueError, "cdf row %zd is not strictly increasing at entry %d", r, j);
                goto done;
            }
        }
    }
    /* Pass 1: validate indexes and count the steps exactly. */
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < n; ++i) {
        const int32_t c = idx[i];
        if (c < 0 || c >= rows) {
            PyErr_Format(PyExc_ValueError, "index %zd: cdf index %d outside [0, %zd)", i, c, rows);
            goto done;
        }
        int32_t value = 0;
        uint32_t raw = 0;
        const int s = symbol_steps(sym[i], off[c], len[c] - 2, &value, &raw, i);
        if (s < 0) goto done;
        total += s;
    }
    steps = (step_t *)PyMem_Malloc((size_t)(total > 0 ? total : 1) * sizeof(step_t));
    /* Each step writes at most one 32-bit word, the final flush two. */
    out = (uint32_t *)PyMem_Malloc((size_t)(total + 2) * sizeof(uint32_t));
    if (steps == NULL || out == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* Pass 2: build the steps in compressai's order (symbol, then bypass count, then raw nibbles, low first). */
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n; ++i) {
        const int32_t c = idx[i];
        const int32_t max_value = len[c] - 2;
        const int32_t *row = cdf + c * row_len;
        int32_t value = 0;
        uint32_t raw = 0;
        (void)symbol_steps(sym[i], off[c], max_value, &value, &raw, i);
        steps[k].start = (uint16_t)row[value];
        /* rows have >= 3 strictly increasing entries, so 1 <= freq <= 65535 fits compressai's uint16 cast */
        steps[k].freq = (uint16_t)(row[value + 1] - row[value]);
        ++k;
        if (value == max_value) {
            uint32_t n_bypass = 0;
            while ((raw >> (n_bypass * BYPASS_BITS)) != 0) {
                ++n_bypass;
            }
            uint32_t v = n_bypass;
            while (v >= MAX_BYPASS_VAL) {
                steps[k].start = MAX_BYPASS_VAL;
                steps[k].freq = 0;
                ++k;
                v -= MAX_BYPASS_VAL;
            }
            steps[k].start = v;
            steps[k].freq = 0;
            ++k;
            for (uint32_t j = 0; j < n_bypass; ++j) {
                steps[k].start = (raw >> (j * BYPASS_BITS)) & MAX_BYPASS_VAL;
                steps[k].freq = 0;
                ++k;
            }
        }
    }
    /* Pass 3: rANS runs backwards over the steps, writing 32-bit words from the end of the buffer. It touches only
     * our own step and output arrays, so other Python threads (e.g. a ROS executor) may run meanwhile. */
    uint64_t x = RANS_L;
    uint32_t *ptr = out + total + 2;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t s = k - 1; s >= 0; --s) {
        const step_t st = steps[s];
        if (st.freq != 0) {
            const uint64_t x_max = ((RANS_L >> PRECISION) << 32) * st.freq;
            if (x >= x_max) {
                *--ptr = (uint32_t)x;
                x >>= 32;
            }
            x = ((x / st.freq) << PRECISION) + (x % st.freq) + st.start;
        } else {
            const uint64_t x_max = ((RANS_L >> 16) << 32) * (1u << (16 - BYPASS_BITS));
            if (x >= x_max) {
                *--ptr = (uint32_t)x;
                x >>= 32;
            }
            x = (x << BYPASS_BITS) | st.start;
        }
    }
    ptr -= 2;
    ptr[0] = (uint32_t)x;
    ptr[1] = (uint32_t)(x >> 32);
    Py_END_ALLOW_THREADS
    {
        /* compressai returns the words as they lie in (little-endian) memory; write them little-endian always. */
        const Py_ssize_t words = (out + total + 2) - ptr;
        result = PyBytes_FromStringAndSize(NULL, words * 4);
        if (result != NULL) {
            unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(result);
            for (Py_ssize_t w = 0; w < words; ++w) {
                const uint32_t v = ptr[w];
                dst[4 * w] = (unsigned char)v;
                dst[4 * w + 1] = (unsigned char)(v >> 8);
                dst[4 * w + 2] = (unsigned char)(v >> 16);
                dst[4 * w + 3] = (unsigned char)(v >> 24);
            }
        }
    }

done:
    PyMem_Free(steps);
    PyMem_Free(out);
    PyBuffer_Release(&b_off);
fail_len:
    PyBuffer_Release(&b_len);
fail_cdf:
    PyBuffer_Release(&b_cdf);
fail_idx:
    PyBuffer_Release(&b_idx);
fail_sym:
    PyBuffer_Release(&b_sym);
    return result;
}

static PyMethodDef rans_methods[] = {
    {"encode", rans_encode, METH_VARARGS,
     "encode(symbols, indexes, cdfs, cdf_lengths, offsets) -> bytes\n\n"
     "rANS-encode int32 symbols exactly as compressai's RansEncoder.encode_with_indexes does."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef rans_module = {
    PyModuleDef_HEAD_INIT, "_rans", "compressai-compatible rANS encoder (C, no dependencies).", -1, rans_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__rans(void) {
    return PyModule_Create(&rans_module);
}
