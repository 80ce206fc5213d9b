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
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

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

static PyMethodDef slots_methods[] = {
    {"constructor", constructor, METH_O,
     "constructor(cls): a positional constructor filling the slots of cls in __slots__ order."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef slots_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "bitmex_trio_websocket._compiled._slots",
    .m_doc = "Positional constructors of slotted result classes (see _storage/_slots.c).",
    .m_size = -1,
    .m_methods = slots_methods,
};

PyMODINIT_FUNC
PyInit__slots(void)
{
    if (PyType_Ready(&SlotConstructorType) < 0) {
        return NULL;
    }
    return PyModule_Create(&slots_module);
}
