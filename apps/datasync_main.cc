// datasync: the operator's CLI.
#include "cli/cli.h"

int main(int argc, char** argv) { return ds::RunCli(argc, argv); }
