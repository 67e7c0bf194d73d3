/* Lets bench_overhead.py switch callgrind's instrumentation on and off from Python
 * (ctypes), synchronously, so only the measured calls are simulated. Outside valgrind
 * both functions do nothing. Built by setup.sh. */
#include <valgrind/callgrind.h>

void start_instrumentation(void) { CALLGRIND_START_INSTRUMENTATION; }
void stop_instrumentation(void) { CALLGRIND_STOP_INSTRUMENTATION; }
