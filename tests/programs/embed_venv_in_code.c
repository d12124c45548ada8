/* A native program that embeds CPython and imports ttnn from a virtualenv named only here, in
 * its own code (VENV_SITE, set at compile time): nothing on its command line or in its ELF
 * names libtt_metal.so, which arrives by dlopen when ttnn is imported.
 * Usage: embed_venv_in_code SCRIPT [ARGS...]  runs SCRIPT with sys.argv = [SCRIPT, ARGS...]. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdio.h>

#ifndef VENV_SITE
#error "compile with -DVENV_SITE=\"<venv>/lib/python3.X/site-packages\""
#endif
#ifndef PYTHON_HOME
#error "compile with -DPYTHON_HOME=\"<the interpreter's base prefix>\""
#endif

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s SCRIPT [ARGS...]\n", argv[0]);
        return 2;
    }
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    /* argv is the script's, not options for the interpreter. */
    config.parse_argv = 0;
    /* argv is the script's, not options for the interpreter. */
    config.parse_argv = 0;
    PyStatus status = PyConfig_SetBytesString(&config, &config.home, PYTHON_HOME);
    if (!PyStatus_Exception(status))
        status = PyConfig_SetBytesArgv(&config, argc - 1, argv + 1);
    if (!PyStatus_Exception(status))
        status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status))
        Py_ExitStatusException(status);
    if (PyRun_SimpleString("import site; site.addsitedir(\"" VENV_SITE "\")") != 0)
        return 3;
    FILE *script = fopen(argv[1], "r");
    if (!script) {
        perror(argv[1]);
        return 4;
    }
    int failed = PyRun_SimpleFileEx(script, argv[1], 1);
    /* The workload ends with sys.exit(code): PyRun_SimpleFile exits the process for it. */
    if (Py_FinalizeEx() < 0)
        return 120;
    return failed ? 1 : 0;
}
