/* Positional constructors for frozen slotted dataclasses, for the compiled core's result objects.
 *
 * Theory of operation
 * -------------------
 * Every ``Storage.apply`` returns an ``ApplyResult`` holding ``Change``s: frozen slotted
 * dataclasses of ``_events``. Built the ordinary way (their ``__init__`` goes through
 * ``object.__setattr__`` per field), or even with the twin trick of ``_events.fast_constructor``
 * (a plain class with the same slots, attribute stores, then ``__class__`` switched), two of them
 * cost about 4,000 instructions per message: a quarter of the compiled store's work.
 *
 * ``constructor(cls)`` checks once that ``cls`` is a class whose instances are exactly its
 * ``__slots__`` (object-typed member descriptors, no ``__dict__``, no ``__weakref__``) and
 * returns a callable that allocates an instance with the class's own allocator and stores its
 * positional arguments into the slots, in ``__slots__`` order. The instance is what the class's
 * ``__init__`` would have built from the same values; nothing validates them (the callers pass
 * every field, already checked), and no ``__post_init__`` runs (the classes have none: the
 * check below refuses a class that defines one).
 *
 * Only the compiled core uses this module (``_book.new_change``/``new_result``); the pure-Python
 * core keeps the twin trick, and ``tests/test_cores.py`` compares what the two build.
 *
 * The module also converts BitMEX timestamps for the compiled core's compact book levels:
 * ``stamp_ms(text)`` (milliseconds since the epoch of a canonical ``YYYY-MM-DDTHH:MM:SS.mmmZ``
 * stamp, -1 for any other text) and ``stamp_text(ms)`` (its inverse), the C twins of
 * ``_storage/_stamps.py`` (which says what canonical means; ``tests/storage/test_stamps.py``
 * checks that both agree). The calendar is the proleptic Gregorian one, by day arithmetic.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <math.h>

#define MAX_SLOTS 16

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyTypeObject *cls;
    Py_ssize_t count;
    Py_ssize_t offsets[MAX_SLOTS];
} SlotConstructor;

static PyObject *
slot_constructor_call(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    SlotConstructor *maker = (SlotConstructor *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != maker->count || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_Format(PyExc_TypeError, "%s constructor takes exactly %zd positional arguments",
                     maker->cls->tp_name, maker->count);
        return NULL;
    }
    PyObject *made = maker->cls->tp_alloc(maker->cls, 0);
    if (made == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyObject **slot = (PyObject **)((char *)made + maker->offsets[i]);
        Py_INCREF(args[i]);
        *slot = args[i];  /* a fresh, zeroed instance: no old value to release */
    }
    return made;
}

static void
slot_constructor_dealloc(PyObject *self)
{
    Py_XDECREF(((SlotConstructor *)self)->cls);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *
slot_constructor_repr(PyObject *self)
{
    return PyUnicode_FromFormat("<slot constructor of %s>", ((SlotConstructor *)self)->cls->tp_name);
}

static PyTypeObject SlotConstructorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bitmex_trio_websocket._compiled._slots.SlotConstructor",
    .tp_basicsize = sizeof(SlotConstructor),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(SlotConstructor, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_dealloc = slot_constructor_dealloc,
    .tp_repr = slot_constructor_repr,
    .tp_doc = "Builds an instance of one slotted class from its fields, positionally.",
};

/* The byte offset of the object slot ``name`` of ``cls``, or -1 with an exception set. */
static Py_ssize_t
slot_offset(PyTypeObject *cls, PyObject *name)
{
    PyObject *descr = PyDict_GetItemWithError(cls->tp_dict, name);
    if (descr == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_TypeError, "%s has no slot %R", cls->tp_name, name);
        }
        return -1;
    }
    if (!Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "%s.%U is not a slot", cls->tp_name, name);
        return -1;
    }
    PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
    if (member->type != T_OBJECT_EX || (member->flags & READONLY)
        || member->offset < (Py_ssize_t)sizeof(PyObject)
        || member->offset + (Py_ssize_t)sizeof(PyObject *) > cls->tp_basicsize) {
        PyErr_Format(PyExc_TypeError, "%s.%U is not a plain object slot", cls->tp_name, name);
        return -1;
    }
    return member->offset;
}

static PyObject *
constructor(PyObject *module, PyObject *cls_arg)
{
    if (!PyType_Check(cls_arg)) {
        PyErr_SetString(PyExc_TypeError, "constructor() takes a class");
        return NULL;
    }
    PyTypeObject *cls = (PyTypeObject *)cls_arg;
    if (cls->tp_dictoffset != 0 || cls->tp_weaklistoffset != 0 || cls->tp_itemsize != 0) {
        PyErr_Format(PyExc_TypeError, "%s instances are not exactly their slots", cls->tp_name);
        return NULL;
    }
    PyObject *post_init = PyObject_GetAttrString(cls_arg, "__post_init__");
    if (post_init != NULL) {
        Py_DECREF(post_init);
        PyErr_Format(PyExc_TypeError, "%s has a __post_init__", cls->tp_name);
        return NULL;
    }
    if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return NULL;
    }
    PyErr_Clear();
    PyObject *slots = PyDict_GetItemString(cls->tp_dict, "__slots__");
    if (slots == NULL || !PyTuple_Check(slots)) {
        PyErr_Format(PyExc_TypeError, "%s has no __slots__ tuple", cls->tp_name);
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(slots);
    if (count == 0 || count > MAX_SLOTS
        || cls->tp_basicsize != (Py_ssize_t)sizeof(PyObject) + count * (Py_ssize_t)sizeof(PyObject *)) {
        PyErr_Format(PyExc_TypeError, "%s instances are not exactly their slots", cls->tp_name);
        return NULL;
    }
    SlotConstructor *maker = PyObject_New(SlotConstructor, &SlotConstructorType);
    if (maker == NULL) {
        return NULL;
    }
    maker->vectorcall = slot_constructor_call;
    maker->count = count;
    maker->cls = NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t offset = slot_offset(cls, PyTuple_GET_ITEM(slots, i));
        if (offset < 0) {
            Py_DECREF(maker);
            return NULL;
        }
        maker->offsets[i] = offset;
    }
    Py_INCREF(cls);
    maker->cls = cls;
    return (PyObject *)maker;
}

/* -- timestamps ---------------------------------------------------------------------------
 *
 * Consecutive stamps mostly fall on the same day, so each direction keeps its last day (the 11
 * characters "YYYY-MM-DDT" and the day's number): the calendar is worked out only when the day
 * changes. These two caches are the module's only state (the GIL guards them).
 */

#define DAY_MS 86400000LL
/* 10000-01-01 as days since the epoch: the canonical years are 1970 to 9999. */
#define MAX_MS (2932897LL * DAY_MS - 1)
#define DATE_LENGTH 11 /* "YYYY-MM-DDT" */

static Py_UCS1 parsed_date[DATE_LENGTH]; /* the last date parsed, and its day */
static long long parsed_day = -1;
static Py_UCS1 shown_date[DATE_LENGTH]; /* the last day formatted, and its date */
static long long shown_day = -1;

/* "00" to "99": two digits written at once. */
static const char PAIRS[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static inline void
put_pair(Py_UCS1 *out, int value)
{
    out[0] = (Py_UCS1)PAIRS[2 * value];
    out[1] = (Py_UCS1)PAIRS[2 * value + 1];
}

/* The value of the two ASCII digits at ``at``, or -1 if either is not a digit. */
static inline int
pair_at(const Py_UCS1 *at)
{
    unsigned tens = (unsigned)at[0] - '0', units = (unsigned)at[1] - '0';
    return tens > 9 || units > 9 ? -1 : (int)(tens * 10 + units);
}

/* Days since 1970-01-01 of a canonical "YYYY-MM-DDT" (years 1970 to 9999), or -1. */
static long long
date_days(const Py_UCS1 *s)
{
    int century = pair_at(s), years = pair_at(s + 2), month = pair_at(s + 5), day = pair_at(s + 8);
    if (century < 0 || years < 0 || s[4] != '-' || s[7] != '-' || s[10] != 'T') {
        return -1;
    }
    long long year = century * 100 + years;
    static const int days_in[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    if (year < 1970 || month < 1 || month > 12 || day < 1
        || day > days_in[month - 1] + (month == 2 && leap)) {
        return -1;
    }
    /* Howard Hinnant's days_from_civil, on years counted from March. */
    year -= month <= 2;
    long long era = year / 400;
    long long yoe = year - era * 400;
    long long doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static PyObject *
stamp_ms(PyObject *module, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "stamp_ms() takes a str");
        return NULL;
    }
    if (PyUnicode_READY(arg) < 0) {
        return NULL;
    }
    if (PyUnicode_GET_LENGTH(arg) != 24 || !PyUnicode_IS_ASCII(arg)) {
        return PyLong_FromLong(-1);
    }
    const Py_UCS1 *s = PyUnicode_1BYTE_DATA(arg);
    long long days = parsed_day;
    if (days < 0 || memcmp(s, parsed_date, DATE_LENGTH) != 0) {
        days = date_days(s);
        if (days < 0) {
            return PyLong_FromLong(-1);
        }
        memcpy(parsed_date, s, DATE_LENGTH);
        parsed_day = days;
    }
    int hours = pair_at(s + 11), minutes = pair_at(s + 14), seconds = pair_at(s + 17);
    int millis = pair_at(s + 20);
    unsigned last = (unsigned)s[22] - '0';
    if (hours < 0 || hours > 23 || minutes < 0 || minutes > 59 || seconds < 0 || seconds > 59
        || millis < 0 || last > 9 || s[13] != ':' || s[16] != ':' || s[19] != '.'
        || s[23] != 'Z') {
        return PyLong_FromLong(-1);
    }
    long long day_ms = ((hours * 60 + minutes) * 60 + seconds) * 1000LL + millis * 10 + last;
    return PyLong_FromLongLong(days * DAY_MS + day_ms);
}

static PyObject *
stamp_text(PyObject *module, PyObject *arg)
{
    if (!PyLong_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "stamp_text() takes an int");
        return NULL;
    }
    int overflow = 0;
    long long ms = PyLong_AsLongLongAndOverflow(arg, &overflow);
    if (ms == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (overflow != 0 || ms < 0 || ms > MAX_MS) {
        PyErr_Format(PyExc_ValueError, "%R ms is outside the stamps of years 1970 to 9999", arg);
        return NULL;
    }
    long long days = ms / DAY_MS;
    int rest = (int)(ms % DAY_MS);
    if (days != shown_day) {
        /* The civil date of a day count (Howard Hinnant's civil_from_days). */
        long long z = days + 719468;
        long long era = z / 146097;
        long long doe = z - era * 146097;
        long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        long long mp = (5 * doy + 2) / 153;
        int day = (int)(doy - (153 * mp + 2) / 5 + 1);
        int month = (int)(mp < 10 ? mp + 3 : mp - 9);
        int year = (int)(yoe + era * 400 + (month <= 2));
        put_pair(shown_date, year / 100);
        put_pair(shown_date + 2, year % 100);
        shown_date[4] = '-';
        put_pair(shown_date + 5, month);
        shown_date[7] = '-';
        put_pair(shown_date + 8, day);
        shown_date[10] = 'T';
        shown_day = days;
    }
    PyObject *text = PyUnicode_New(24, 127);
    if (text == NULL) {
        return NULL;
    }
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
    memcpy(out, shown_date, DATE_LENGTH);
    int seconds = rest / 1000;
    int millis = rest % 1000;
    put_pair(out + 11, seconds / 3600);
    out[13] = ':';
    put_pair(out + 14, seconds / 60 % 60);
    out[16] = ':';
    put_pair(out + 17, seconds % 60);
    out[19] = '.';
    put_pair(out + 20, millis / 10);
    out[22] = (Py_UCS1)('0' + millis % 10);
    out[23] = 'Z';
    return text;
}

/* ``one_change(make_change, make_result)``: a callable building, from ``(table, action, symbol,
 * row)``, the result of a message that changed one row: ``make_result(table, action,
 * (make_change(table, action, symbol, (row,)),), 0, ())``. Most messages are such, and one call
 * instead of two constructors and two tuples built by the caller saves about 400 instructions. */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    SlotConstructor *make_change;
    SlotConstructor *make_result;
} OneChange;

static PyObject *
one_change_call(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    OneChange *maker = (OneChange *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 4 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError,
                        "one_change takes exactly 4 positional arguments (table, action, symbol, row)");
        return NULL;
    }
    PyObject *rows = PyTuple_Pack(1, args[3]);
    if (rows == NULL) {
        return NULL;
    }
    PyObject *change_args[4] = {args[0], args[1], args[2], rows};
    PyObject *change = slot_constructor_call((PyObject *)maker->make_change, change_args, 4, NULL);
    Py_DECREF(rows);
    if (change == NULL) {
        return NULL;
    }
    PyObject *changes = PyTuple_Pack(1, change);
    Py_DECREF(change);
    if (changes == NULL) {
        return NULL;
    }
    PyObject *zero = PyLong_FromLong(0);
    PyObject *none = PyTuple_New(0);
    PyObject *result = NULL;
    if (zero != NULL && none != NULL) {
        PyObject *result_args[5] = {args[0], args[1], changes, zero, none};
        result = slot_constructor_call((PyObject *)maker->make_result, result_args, 5, NULL);
    }
    Py_XDECREF(zero);
    Py_XDECREF(none);
    Py_DECREF(changes);
    return result;
}

static void
one_change_dealloc(PyObject *self)
{
    Py_XDECREF(((OneChange *)self)->make_change);
    Py_XDECREF(((OneChange *)self)->make_result);
    Py_TYPE(self)->tp_free(self);
}

static PyTypeObject OneChangeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bitmex_trio_websocket._compiled._slots.OneChange",
    .tp_basicsize = sizeof(OneChange),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(OneChange, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_dealloc = one_change_dealloc,
    .tp_doc = "Builds the result of a message that changed one row.",
};

static PyObject *
one_change(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !Py_IS_TYPE(args[0], &SlotConstructorType)
        || !Py_IS_TYPE(args[1], &SlotConstructorType)
        || ((SlotConstructor *)args[0])->count != 4 || ((SlotConstructor *)args[1])->count != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "one_change() takes a 4-field and a 5-field slot constructor");
        return NULL;
    }
    OneChange *maker = PyObject_New(OneChange, &OneChangeType);
    if (maker == NULL) {
        return NULL;
    }
    maker->vectorcall = one_change_call;
    Py_INCREF(args[0]);
    Py_INCREF(args[1]);
    maker->make_change = (SlotConstructor *)args[0];
    maker->make_result = (SlotConstructor *)args[1];
    return (PyObject *)maker;
}

/* ``standard_fields(row)``: the values of an L2 row holding exactly the seven standard fields in
 * the order BitMEX writes them (symbol id side size price timestamp transactTime), as a tuple,
 * when they are what a compact level holds (what ``_book._standard_row`` checks: str symbol and
 * stamps, int id, side "Buy" or "Sell", a small int size, a finite float or small int price);
 * ``None`` for anything else (other fields, another order, other types or huge ints: the caller
 * decides by name, in Python). One pass over the dict instead of seven lookups and checks. */

static const char *const standard_names[7] = {
    "symbol", "id", "side", "size", "price", "timestamp", "transactTime",
};
static PyObject *standard_keys[7];
/* The key objects last seen equal to each name: a JSON parser with a key cache (orjson) hands
 * out the very same objects again, so most comparisons are one pointer compare. */
static PyObject *seen_keys[7];

/* An exact int within +-2**60 (``_validate._WHOLE``: finite, compared unboxed). */
static int
small_int(PyObject *value)
{
    if (!PyLong_CheckExact(value)) {
        return 0;
    }
    int overflow = 0;
    long long whole = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow != 0 || (whole == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    return whole >= -(1LL << 60) && whole <= (1LL << 60);
}

static int
is_side_name(PyObject *value)
{
    if (!PyUnicode_CheckExact(value) || PyUnicode_KIND(value) != PyUnicode_1BYTE_KIND) {
        return 0;
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(value);
    const char *text = (const char *)PyUnicode_DATA(value);
    return (length == 3 && memcmp(text, "Buy", 3) == 0)
        || (length == 4 && memcmp(text, "Sell", 4) == 0);
}

/* The types ``_standard_row`` accepts, of (symbol id side size price timestamp transactTime). */
static int
standard_values(PyObject *values)
{
    PyObject *price = PyTuple_GET_ITEM(values, 4);
    if (PyFloat_CheckExact(price)) {
        if (!isfinite(PyFloat_AS_DOUBLE(price))) {
            return 0;
        }
    }
    else if (!small_int(price)) {
        return 0;
    }
    return PyUnicode_CheckExact(PyTuple_GET_ITEM(values, 0))
        && PyLong_CheckExact(PyTuple_GET_ITEM(values, 1))
        && is_side_name(PyTuple_GET_ITEM(values, 2))
        && small_int(PyTuple_GET_ITEM(values, 3))
        && PyUnicode_CheckExact(PyTuple_GET_ITEM(values, 5))
        && PyUnicode_CheckExact(PyTuple_GET_ITEM(values, 6));
}

static PyObject *
standard_fields(PyObject *module, PyObject *row)
{
    if (!PyDict_CheckExact(row) || PyDict_GET_SIZE(row) != 7) {
        Py_RETURN_NONE;
    }
    PyObject *values = PyTuple_New(7);
    if (values == NULL) {
        return NULL;
    }
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    int i = 0;
    while (i < 7 && PyDict_Next(row, &pos, &key, &value)) {
        PyObject *want = standard_keys[i];
        if (key != want && key != seen_keys[i]) {
            Py_ssize_t length = PyUnicode_GET_LENGTH(want);
            if (!PyUnicode_CheckExact(key) || PyUnicode_GET_LENGTH(key) != length
                || PyUnicode_KIND(key) != PyUnicode_1BYTE_KIND
                || memcmp(PyUnicode_DATA(key), PyUnicode_DATA(want), (size_t)length) != 0) {
                Py_DECREF(values);
                Py_RETURN_NONE;
            }
            Py_INCREF(key);  /* an exact str equal to the name: immutable, safe to keep */
            Py_XSETREF(seen_keys[i], key);
        }
        Py_INCREF(value);
        PyTuple_SET_ITEM(values, i, value);
        i++;
    }
    if (i != 7 || !standard_values(values)) {
        Py_DECREF(values);
        Py_RETURN_NONE;
    }
    return values;
}

static PyMethodDef slots_methods[] = {
    {"standard_fields", standard_fields, METH_O,
     "standard_fields(row): the seven standard L2 fields in BitMEX's order, typed as a level holds them, as a tuple; or None."},
    {"one_change", (PyCFunction)(void (*)(void))one_change, METH_FASTCALL,
     "one_change(make_change, make_result): builds the result of a one-row change at once."},
    {"constructor", constructor, METH_O,
     "constructor(cls): a positional constructor filling the slots of cls in __slots__ order."},
    {"stamp_ms", stamp_ms, METH_O,
     "stamp_ms(text): milliseconds since the epoch of a canonical stamp, -1 for other text."},
    {"stamp_text", stamp_text, METH_O,
     "stamp_text(ms): the canonical stamp of ms milliseconds since the epoch."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef slots_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "bitmex_trio_websocket._compiled._slots",
    .m_doc = "Slotted result constructors and stamp conversions of the compiled core (see _slots.c).",
    .m_size = -1,
    .m_methods = slots_methods,
};

PyMODINIT_FUNC
PyInit__slots(void)
{
    if (PyType_Ready(&SlotConstructorType) < 0 || PyType_Ready(&OneChangeType) < 0) {
        return NULL;
    }
    for (int i = 0; i < 7; i++) {
        if (standard_keys[i] == NULL) {
            standard_keys[i] = PyUnicode_InternFromString(standard_names[i]);
            if (standard_keys[i] == NULL) {
                return NULL;
            }
        }
    }
    return PyModule_Create(&slots_module);
}
