/* cuda_bf16.h — cuda-emu stand-in: everything is in emu.h (see README.md). */
#include "emu.h"
