/* Plain Tardis slice blocks split and checked in one pass, for the replay's reader.
 *
 * Theory of operation
 * -------------------
 * ``_replay/_sources.py`` reads slice files in blocks of about 1 MiB of whole lines (joined by
 * ``\n``, without the last one's). A block whose every line is *plain*,
 *
 *     YYYY-MM-DDTHH:MM:SS.fffffffZ {...
 *
 * (a 28-character stamp of a real date of years 1-9999, hour < 24, minute < 60, any two digits
 * of seconds, seven of fraction; a space; a ``{``; then anything ASCII but ``\r``), is replayed
 * without a Python step per line. The pure-Python path proves that with ``isascii``, a search
 * for ``\r`` and two regular expressions over the block, then splits it: about 5,600
 * instructions per frame. ``split_plain(block)`` checks the block in one pass over its bytes,
 * noting each line's end and receive time in C arrays, and only then makes Python objects:
 * ``(texts, times)``, one ``bytes`` per line from column 29 on (the frame's text: what orjson
 * gets) and the times packed as C doubles (8 bytes a line, read through an ``array("d")``);
 * about 850 instructions per frame in all, by callgrind. It returns ``None``, having made no
 * Python object, for a block the pure path would not take as plain (an empty piece, i.e. an
 * empty line or a block ending in ``\n``, included), which is then read line by line as before.
 *
 * A time is the pure path's float exactly: the minute's start (whole seconds since the epoch,
 * exact in a double) plus ``seconds + fraction / 1e7``, the same correctly rounded IEEE
 * operations in the same order as ``_sources._plain_time``. A line whose first 16 bytes (the
 * minute) equal the previous line's reuses its checked date and start.
 *
 * The block is untrusted: every read is inside it; a line is checked only once it has at least
 * 30 bytes, and the scan for its end reads 16 (or 8) bytes at a time only while that many
 * remain. ``tests/replay/test_plain_lines.py`` compares this with the pure path.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#include <emmintrin.h>
#define HAVE_SSE2 1
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
static inline int
first_bit(unsigned int mask)
{
    unsigned long index;
    _BitScanForward(&index, mask);
    return (int)index;
}
#else
#define first_bit(mask) __builtin_ctz(mask)
#endif
#endif

#define STAMP 28     /* characters of a stamp */
#define TEXT_AT 29   /* where a plain line's frame text starts (its "{") */
#define SHORTEST 30  /* a plain line holds at least the stamp, a space and "{" */
#define MINUTE 16    /* "YYYY-MM-DDTHH:MM": what a line shares with the previous one */

/* The first byte of [q, end) that ends a plain line ("\n") or spoils it ("\r", not ASCII);
 * end if none. */
static const unsigned char *
scan(const unsigned char *q, const unsigned char *end)
{
#ifdef HAVE_SSE2
    const __m128i newline = _mm_set1_epi8('\n');
    const __m128i cr = _mm_set1_epi8('\r');
    while (end - q >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)q);
        /* A byte's top bit is set for "\n", "\r" and anything not ASCII. */
        __m128i ends = _mm_or_si128(_mm_cmpeq_epi8(v, newline), _mm_cmpeq_epi8(v, cr));
        __m128i hit = _mm_or_si128(ends, v);
        unsigned int mask = (unsigned int)_mm_movemask_epi8(hit);
        if (mask != 0) {
            return q + first_bit(mask);
        }
        q += 16;
    }
#else
    const uint64_t ones = 0x0101010101010101ULL;
    const uint64_t highs = 0x8080808080808080ULL;
    while (end - q >= 8) {
        uint64_t w;
        memcpy(&w, q, 8);
        uint64_t a = w ^ (ones * '\n');
        uint64_t b = w ^ (ones * '\r');
        /* Exact "is there one" (the position is found below, byte by byte). */
        if ((((a - ones) & ~a) | ((b - ones) & ~b) | w) & highs) {
            break;
        }
        q += 8;
    }
#endif
    while (q < end && *q != '\n' && *q != '\r' && *q < 0x80) {
        q++;
    }
    return q;
}

static inline int
is_digit(unsigned char c)
{
    return (unsigned char)(c - '0') < 10;
}

static inline int
two(const unsigned char *p)
{
    return (p[0] - '0') * 10 + (p[1] - '0');
}

/* Days from 1970-01-01 to a valid proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t
days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = y / 400;  /* y >= 0 here: years start at 1 */
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Whether a stamp's first 16 bytes are "YYYY-MM-DDTHH:MM" of a real date (year 1-9999), hour
 * < 24, minute < 60; if so, *start is the minute's start in seconds since the epoch. */
static int
minute_start(const unsigned char *p, double *start)
{
    static const int month_days[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (!(is_digit(p[0]) && is_digit(p[1]) && is_digit(p[2]) && is_digit(p[3]) && p[4] == '-'
          && is_digit(p[5]) && is_digit(p[6]) && p[7] == '-' && is_digit(p[8]) && is_digit(p[9])
          && p[10] == 'T' && is_digit(p[11]) && is_digit(p[12]) && p[13] == ':'
          && is_digit(p[14]) && is_digit(p[15]))) {
        return 0;
    }
    int year = two(p) * 100 + two(p + 2);
    int month = two(p + 5);
    int day = two(p + 8);
    int hour = two(p + 11);
    int minute = two(p + 14);
    if (year == 0 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59) {
        return 0;
    }
    int last = month_days[month];
    if (month == 2 && year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)) {
        last = 29;
    }
    if (day > last) {
        return 0;
    }
    /* whole seconds, |x| < 2**38: exact in a double, as datetime's timestamp() */
    *start = (double)(days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60);
    return 1;
}

/* Bytes 16-29 of a plain line: ":SS.fffffffZ {" */
static inline int
plain_rest(const unsigned char *p)
{
    return p[16] == ':' && is_digit(p[17]) && is_digit(p[18]) && p[19] == '.' && is_digit(p[20])
           && is_digit(p[21]) && is_digit(p[22]) && is_digit(p[23]) && is_digit(p[24])
           && is_digit(p[25]) && is_digit(p[26]) && p[27] == 'Z' && p[28] == ' ' && p[29] == '{';
}

/* Where each line of a plain block ends, and its time: filled by the first pass. */
typedef struct {
    Py_ssize_t count, capacity;
    Py_ssize_t *stops;  /* offset of line i's end (its "\n", or the block's end) */
    double *times;
} Lines;

static int
grow(Lines *lines)
{
    Py_ssize_t capacity = lines->capacity * 2;
    Py_ssize_t *stops = PyMem_Realloc(lines->stops, capacity * sizeof(Py_ssize_t));
    if (stops == NULL) {
        return 0;
    }
    lines->stops = stops;
    double *times = PyMem_Realloc(lines->times, capacity * sizeof(double));
    if (times == NULL) {
        return 0;
    }
    lines->times = times;
    lines->capacity = capacity;
    return 1;
}

/* The first pass: 1 if every line of [block, end) is plain (lines filled), 0 if not, -1 on a
 * memory error (raised). */
static int
check(const unsigned char *block, const unsigned char *end, Lines *lines)
{
    const unsigned char *p = block;  /* the start of a line */
    const unsigned char *previous = NULL;  /* the last line whose minute was checked */
    double start = 0.0;
    for (;;) {
        if (end - p < SHORTEST || !plain_rest(p)) {
            return 0;
        }
        if (previous == NULL || memcmp(p, previous, MINUTE) != 0) {
            if (!minute_start(p, &start)) {
                return 0;
            }
            previous = p;
        }
        const unsigned char *stop = scan(p + SHORTEST, end);
        if (stop < end && *stop != '\n') {
            return 0;  /* "\r" or not ASCII */
        }
        if (lines->count == lines->capacity && !grow(lines)) {
            PyErr_NoMemory();
            return -1;
        }
        /* As _sources._plain_time: start + (int(SS) + int(fffffff) / 10**7), each step one
         * correctly rounded double operation (no product, so nothing a compiler may fuse). */
        double seconds = (double)two(p + 17);
        double fraction = (double)(two(p + 20) * 100000 + two(p + 22) * 1000 + two(p + 24) * 10
                                   + (p[26] - '0'));
        lines->times[lines->count] = start + (seconds + fraction / 1e7);
        lines->stops[lines->count++] = stop - block;
        if (stop == end) {
            return 1;
        }
        p = stop + 1;  /* after the "\n": an empty rest is an empty line, not plain */
    }
}

/* The second pass: the texts, in a list made at its size (nothing is allocated for a block
 * that is not plain). */
static PyObject *
texts_of(const unsigned char *block, const Lines *lines)
{
    PyObject *texts = PyList_New(lines->count);
    if (texts == NULL) {
        return NULL;
    }
    Py_ssize_t line_start = 0;
    for (Py_ssize_t i = 0; i < lines->count; i++) {
        Py_ssize_t stop = lines->stops[i];
        PyObject *text = PyBytes_FromStringAndSize((const char *)block + line_start + TEXT_AT,
                                                   stop - line_start - TEXT_AT);
        if (text == NULL) {
            Py_DECREF(texts);  /* the items not yet set are NULL: list_dealloc skips them */
            return NULL;
        }
        PyList_SET_ITEM(texts, i, text);
        line_start = stop + 1;
    }
    return texts;
}

static PyObject *
split_plain(PyObject *module, PyObject *arg)
{
    (void)module;
    if (!PyBytes_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "split_plain takes bytes, not %.100s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    const unsigned char *block = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t size = PyBytes_GET_SIZE(arg);
    if (size < SHORTEST) {
        Py_RETURN_NONE;  /* the empty block included */
    }
    Lines lines = {0, size / 256 + 16, NULL, NULL};  /* about the lines of a typical block */
    lines.stops = PyMem_Malloc(lines.capacity * sizeof(Py_ssize_t));
    lines.times = PyMem_Malloc(lines.capacity * sizeof(double));
    PyObject *result = NULL;
    if (lines.stops == NULL || lines.times == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int plain = check(block, block + size, &lines);
    if (plain <= 0) {
        if (plain == 0) {
            result = Py_NewRef(Py_None);
        }
        goto done;
    }
    PyObject *texts = texts_of(block, &lines);
    if (texts == NULL) {
        goto done;
    }
    PyObject *packed = PyBytes_FromStringAndSize((const char *)lines.times,
                                                 lines.count * (Py_ssize_t)sizeof(double));
    if (packed == NULL) {
        Py_DECREF(texts);
        goto done;
    }
    result = PyTuple_Pack(2, texts, packed);
    Py_DECREF(texts);
    Py_DECREF(packed);
done:
    PyMem_Free(lines.stops);
    PyMem_Free(lines.times);
    return result;
}

static PyMethodDef lines_methods[] = {
    {"split_plain", split_plain, METH_O,
     "split_plain(block: bytes) -> tuple[list[bytes], bytes] | None\n\n"
     "The frame texts (from column 29) and receive times (packed doubles) of a block of plain\n"
     "Tardis slice lines; None unless every line is plain (see _lines.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef lines_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "bitmex_trio_websocket._compiled._lines",
    .m_doc = "Plain Tardis slice blocks split and checked in one pass (see _replay/_lines.c).",
    .m_size = -1,
    .m_methods = lines_methods,
};

PyMODINIT_FUNC
PyInit__lines(void)
{
    return PyModule_Create(&lines_module);
}
