// `datasync`: the operator's CLI over the admin API (never the database).
// Exit status: 0 success, 1 failure (one line on stderr), 2 usage error, 3 `scrub --wait` found
// drift it could not heal.
#pragma once

namespace ds {

int RunCli(int argc, char** argv);

}  // namespace ds
