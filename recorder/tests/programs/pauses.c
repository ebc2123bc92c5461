/* One thread, three bursts of 100 malloc/free pairs (sizes 3100+, 3200+,
 * 3300+) with 200 ms pauses between them: the hooks take no clock reading,
 * and the collector dates the events from its rounds. */
#include <stdlib.h>
#include <time.h>

static void burst(size_t base) {
    for (int i = 0; i < 100; i++) {
        void *volatile p = malloc(base + i % 64);
        free(p);
    }
}

static void pause_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

int main(void) {
    burst(3100);
    pause_ms(200);
    burst(3200);
    pause_ms(200);
    burst(3300);
    return 0;
}
