// Child processes: the CLI's drills start a scratch server and agent, read what they print and
// stop them. POSIX implementation in posix/process.cc (posix_spawn, signals, waitpid); the Windows
// one (issue 19) maps each call as its comment says.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "platform/file.h"
#include "platform/handle.h"
#include "platform/types.h"

namespace ds::platform {

// How a child process ended.
struct ExitStatus {
  int code = -1;   // its exit code; -1 when a signal ended it
  int signal = 0;  // POSIX: the signal that ended it, 0 when it exited (Windows: always 0)
  bool success() const { return code == 0; }
};

// A child process with its standard output readable line by line and its standard error
// appended to a log file; standard input is inherited. Move-only; not thread-safe (one thread at
// a time). Destroying one that still runs kills it and reaps it (waits for it to be gone).
class ChildProcess {
 public:
  // Wait without a limit.
  static constexpr std::chrono::milliseconds kForever = std::chrono::milliseconds::max();

  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  // Starts the executable at the path `argv[0]` (PATH is not searched) with the arguments `argv`,
  // its stderr appended to `stderr_log` (created 0600 when missing). The child inherits no other
  // handle of ours, starts with no signal blocked (the parent's StopHandler blocks some) and with
  // the default action for SIGINT, SIGTERM and SIGHUP.
  // Windows: CreateProcessW with a command line quoted from argv, STARTUPINFOW's hStdOutput the
  // write end of a CreatePipe pair (the only inheritable end) and hStdError the log opened with
  // FILE_APPEND_DATA; CREATE_NEW_PROCESS_GROUP, so that RequestStop reaches the child alone.
  // Errors: InvalidArgument for an empty argv; "start <argv[0]>: ..." as ErrnoToStatus when the
  // executable cannot be run (NotFound when missing, PermissionDenied when not executable);
  // "open <stderr_log>: ..." when the log cannot be opened.
  [[nodiscard]] static absl::StatusOr<ChildProcess> Start(const std::vector<std::string>& argv,
                                                          const std::filesystem::path& stderr_log);

  // The next line the child wrote to stdout, without its "\n" (a last line without one counts);
  // nullopt at the end of its output (it closed stdout, typically by exiting). Blocks until a
  // whole line or the end arrives. Windows: ReadFile on the pipe.
  [[nodiscard]] absl::StatusOr<std::optional<std::string>> ReadLine();

  // Asks the child to end (POSIX SIGTERM; Windows GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT) to
  // its process group, which its StopHandler takes as a stop). OK and no effect once it is reaped.
  [[nodiscard]] absl::Status RequestStop();

  // Ends the child now (POSIX SIGKILL; Windows TerminateProcess). OK and no effect once reaped.
  [[nodiscard]] absl::Status Kill();

  // Waits up to `timeout` for the child to end and reaps it; once reaped, returns the same status
  // again. DeadlineExceeded when it still runs after `timeout`. Windows: WaitForSingleObject,
  // GetExitCodeProcess.
  [[nodiscard]] absl::StatusOr<ExitStatus> Wait(std::chrono::milliseconds timeout);

  // RequestStop, then up to `grace` for the child to end, then Kill and wait for it.
  [[nodiscard]] absl::StatusOr<ExitStatus> Stop(std::chrono::milliseconds grace);

  // True from Start until the child is reaped (it may have exited meanwhile: Wait tells).
  bool running() const { return process_ != kNone && !exit_.has_value(); }

 private:
  static constexpr NativeHandle kNone = kNoHandle;
  ChildProcess(NativeHandle process, File stdout_read)
      : process_(process), stdout_(std::move(stdout_read)) {}
  // Reaps the child once it has ended: with `block` waits for that, without it answers false
  // while the child runs. True once reaped.
  absl::StatusOr<bool> Reap(bool block);
  absl::Status Signal(int signal);
  void Release();  // kills and reaps a running child

  NativeHandle process_ = kNone;    // POSIX: the process id; Windows: the process HANDLE
  File stdout_;                     // read end of the stdout pipe; closed once at its end
  std::string pending_;             // read from stdout, not yet returned by ReadLine
  std::optional<ExitStatus> exit_;  // set once reaped
};

}  // namespace ds::platform
