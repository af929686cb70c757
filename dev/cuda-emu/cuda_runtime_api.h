/* cuda_runtime_api.h — cuda-emu stand-in: everything is in emu.h (see README.md). */
#include "emu.h"
