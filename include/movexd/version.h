#ifndef MOVEXD_VERSION_H
#define MOVEXD_VERSION_H
#define MOVEXD_VERSION "0.1.0"
#endif
