/* A native program that links the tt-metal runtime (NEEDED libtt_metal.so) and runs a Python
 * script in an embedded CPython, as a C++ application with a Python front end does.
 *
 *   embed_python SCRIPT [ARGS...]
 *
 * EMBED_PYTHON names the interpreter whose environment (a virtualenv with ttnn) the embedded
 * one takes: CPython finds the virtualenv from its program name. The wheel ships no C++
 * headers, so the device work itself happens in the script; the extension module's own
 * NEEDED libtt_metal.so then binds to the copy this program already loaded. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdio.h>
#include <stdlib.h>

static int check(PyStatus status, PyConfig *config) {
    if (!PyStatus_Exception(status)) {
        return 0;
    }
    PyConfig_Clear(config);
    if (PyStatus_IsExit(status)) {
        return status.exitcode;
    }
    Py_ExitStatusException(status);
    return 1;
}

int main(int argc, char **argv) {
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    const char *python = getenv("EMBED_PYTHON");
    int failed = 0;
    if (python != NULL) {
        failed = check(PyConfig_SetBytesString(&config, &config.program_name, python), &config);
        if (failed) {
            return failed;
        }
    }
    failed = check(PyConfig_SetBytesArgv(&config, argc, argv), &config);
    if (failed) {
        return failed;
    }
    failed = check(Py_InitializeFromConfig(&config), &config);
    if (failed) {
        return failed;
    }
    PyConfig_Clear(&config);
    return Py_RunMain();
}
