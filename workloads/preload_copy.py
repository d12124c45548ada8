"""Loads the runtime library from a copy with ctypes before importing ttnn, then runs a workload.

tt-metal's extension module asks for libtt_metal.so by name; the dynamic linker hands it the copy
already loaded (same soname), so the process runs on the copy, not on the file in its ttnn
package. Usage: preload_copy.py COPY_DIR SCRIPT [ARGS...]
"""
import ctypes
import os
import runpy
import sys

copy_dir, script = sys.argv[1], sys.argv[2]
ctypes.CDLL(os.path.join(copy_dir, "libtt_metal.so"), mode=ctypes.RTLD_GLOBAL)
sys.argv = [script] + sys.argv[3:]
runpy.run_path(script, run_name="__main__")
