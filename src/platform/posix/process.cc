#include "platform/process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <thread>
#include <utility>

#include "platform/posix/internal.h"

namespace ds::platform {
namespace {

// posix_spawn's file actions and attributes, destroyed on every path.
struct SpawnSetup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  SpawnSetup() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attributes);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
  }
};

// stdout to `out`, stderr to `err`; no signal blocked; the stop signals at their defaults.
int Prepare(SpawnSetup& setup, int out, int err) {
  if (int rc = posix_spawn_file_actions_adddup2(&setup.actions, out, STDOUT_FILENO); rc != 0) {
    return rc;
  }
  if (int rc = posix_spawn_file_actions_adddup2(&setup.actions, err, STDERR_FILENO); rc != 0) {
    return rc;
  }
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&defaults, s);
  posix_spawnattr_setsigmask(&setup.attributes, &none);
  posix_spawnattr_setsigdefault(&setup.attributes, &defaults);
  return posix_spawnattr_setflags(&setup.attributes,
                                  POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
}

// Closes `fd` when the scope ends.
// execve's argv: pointers into `argv`, then a null.
std::vector<char*> ArgvPointers(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  return args;
}

ExitStatus ExitStatusOf(int wait_status) {
  ExitStatus status;
  if (WIFEXITED(wait_status)) status.code = WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) status.signal = WTERMSIG(wait_status);
  return status;
}

}  // namespace

absl::StatusOr<ChildProcess> ChildProcess::Start(const std::vector<std::string>& argv,
                                                 const std::filesystem::path& stderr_log) {
  if (argv.empty()) return absl::InvalidArgumentError("start: no executable given");
  const int log_fd = ::open(stderr_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) return internal::Errno("open", stderr_log.native());
  const File log = File::Adopt(log_fd, stderr_log.native());
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return internal::Errno("pipe for", argv[0]);
  File read_end = File::Adopt(out[0], absl::StrCat("the output of ", argv[0]));
  const File write_end = File::Adopt(out[1], argv[0]);  // the child's copy is its stdout
  SpawnSetup setup;
  std::vector<char*> args = ArgvPointers(argv);
  pid_t pid = -1;
  int rc = Prepare(setup, write_end.native(), log.native());
  // glibc's posix_spawn reports a failed exec (a missing executable) as its result. The child
  // inherits our `environ` (<unistd.h>).
  if (rc == 0) {
    rc = posix_spawn(&pid, args[0], &setup.actions, &setup.attributes, args.data(), environ);
  }
  if (rc != 0) return ErrnoToStatus(rc, absl::StrCat("start ", argv[0]));
  return ChildProcess(pid, std::move(read_end));
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : process_(std::exchange(other.process_, kNone)),
      stdout_(std::move(other.stdout_)),
      pending_(std::move(other.pending_)),
      exit_(std::exchange(other.exit_, std::nullopt)) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    Release();
    process_ = std::exchange(other.process_, kNone);
    stdout_ = std::move(other.stdout_);
    pending_ = std::move(other.pending_);
    exit_ = std::exchange(other.exit_, std::nullopt);
  }
  return *this;
}

ChildProcess::~ChildProcess() { Release(); }

void ChildProcess::Release() {
  if (running()) {
    ::kill(process_, SIGKILL);
    (void)Reap(/*block=*/true);  // nothing to tell a destructor's caller
  }
  (void)stdout_.Close();  // a read end: nothing its close could report matters
}

absl::StatusOr<std::optional<std::string>> ChildProcess::ReadLine() {
  for (;;) {
    if (size_t end = pending_.find('\n'); end != std::string::npos) {
      std::string line = pending_.substr(0, end);
      pending_.erase(0, end + 1);
      return line;
    }
    if (!stdout_.valid()) break;
    char buffer[4096];
    absl::StatusOr<size_t> n = stdout_.Read(absl::MakeSpan(buffer, sizeof buffer));
    if (!n.ok()) return n.status();
    if (*n == 0) {
      (void)stdout_.Close();
      continue;
    }
    pending_.append(buffer, *n);
  }
  if (pending_.empty()) return std::nullopt;
  return std::exchange(pending_, std::string());
}

absl::Status ChildProcess::Signal(int signal) {
  // Before it is reaped the process id cannot have been reused (an exited child stays a zombie).
  if (!running()) return absl::OkStatus();
  if (::kill(process_, signal) != 0) {
    return internal::Errno("signal process", std::to_string(process_));
  }
  return absl::OkStatus();
}

absl::Status ChildProcess::RequestStop() { return Signal(SIGTERM); }

absl::Status ChildProcess::Kill() { return Signal(SIGKILL); }

absl::StatusOr<bool> ChildProcess::Reap(bool block) {
  if (exit_.has_value()) return true;
  int wait_status = 0;
  pid_t got;
  do {
    got = ::waitpid(process_, &wait_status, block ? 0 : WNOHANG);
  } while (got < 0 && errno == EINTR);
  if (got < 0) return internal::Errno("wait for process", std::to_string(process_));
  if (got == 0) return false;
  exit_ = ExitStatusOf(wait_status);
  return true;
}

absl::StatusOr<ExitStatus> ChildProcess::Wait(std::chrono::milliseconds timeout) {
  if (process_ == kNone) return absl::FailedPreconditionError("wait: no process");
  if (timeout == kForever) {
    absl::StatusOr<bool> reaped = Reap(/*block=*/true);
    if (!reaped.ok()) return reaped.status();
    return *exit_;
  }
  // waitpid has no timeout: poll, briefly at first (a child that is ending ends fast).
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::chrono::milliseconds pause(1);
  for (;;) {
    absl::StatusOr<bool> reaped = Reap(/*block=*/false);
    if (!reaped.ok()) return reaped.status();
    if (*reaped) return *exit_;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("process ", process_, " still runs after ", timeout.count(), " ms"));
    }
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(pause, deadline - now));
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

absl::StatusOr<ExitStatus> ChildProcess::Stop(std::chrono::milliseconds grace) {
  if (absl::Status st = RequestStop(); !st.ok()) return st;
  absl::StatusOr<ExitStatus> ended = Wait(grace);
  if (!absl::IsDeadlineExceeded(ended.status())) return ended;
  if (absl::Status st = Kill(); !st.ok()) return st;
  return Wait(kForever);
}

}  // namespace ds::platform
