#include <cblas.h>
// openblas_set_num_threads / openblas_get_num_threads are OpenBLAS extensions declared in cblas.h's
// companion header on Debian; declare them here so the build does not depend on that header's location.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
