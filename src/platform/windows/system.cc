// What the agent asks of a Windows machine (contracts in platform/system.h).
#include "platform/system.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "platform/path.h"
#include "platform/windows/internal.h"

namespace ds::platform {
namespace {

// A function of a system DLL that older Windows (or Wine) may lack; null when missing.
template <typename F>
F SystemFunction(const wchar_t* dll, const char* name) {
  HMODULE module = ::GetModuleHandleW(dll);
  if (module == nullptr) return nullptr;
  return reinterpret_cast<F>(reinterpret_cast<void*>(::GetProcAddress(module, name)));
}

std::wstring ComputerName(COMPUTER_NAME_FORMAT format) {
  DWORD size = 0;
  ::GetComputerNameExW(format, nullptr, &size);  // fails, sets the size with the terminator
  if (size == 0) return {};
  std::wstring name(size, L'\0');
  if (!::GetComputerNameExW(format, name.data(), &size)) return {};
  name.resize(size);  // now without the terminator
  return name;
}

// RtlGetVersion (ntdll): the real version, unlike GetVersionEx, which reports what the .exe's
// manifest claims to support.
std::string WindowsVersion() {
  using RtlGetVersionFn = LONG(WINAPI*)(OSVERSIONINFOW*);
  auto rtl_get_version = SystemFunction<RtlGetVersionFn>(L"ntdll.dll", "RtlGetVersion");
  if (rtl_get_version == nullptr) return {};
  OSVERSIONINFOW v{};
  v.dwOSVersionInfoSize = sizeof v;
  if (rtl_get_version(&v) != 0) return {};
  return absl::StrCat(v.dwMajorVersion, ".", v.dwMinorVersion, ".", v.dwBuildNumber);
}

std::string Architecture() {
  SYSTEM_INFO si{};
  ::GetNativeSystemInfo(&si);  // the machine's, also for a 32-bit process under WOW64
  switch (si.wProcessorArchitecture) {
    case PROCESSOR_ARCHITECTURE_AMD64:
      return "x86_64";
    case PROCESSOR_ARCHITECTURE_ARM64:
      return "aarch64";
    case PROCESSOR_ARCHITECTURE_INTEL:
      return "x86";
    case PROCESSOR_ARCHITECTURE_ARM:
      return "arm";
    default:
      return absl::StrCat("unknown-", si.wProcessorArchitecture);
  }
}

HANDLE StdHandle(StdStream stream) {
  return ::GetStdHandle(stream == StdStream::kIn    ? STD_INPUT_HANDLE
                        : stream == StdStream::kOut ? STD_OUTPUT_HANDLE
                                                    : STD_ERROR_HANDLE);
}

}  // namespace

absl::StatusOr<SpaceInfo> FreeSpace(const std::filesystem::path& path) {
  const std::string display = PathToUtf8(path);
  std::wstring absolute(MAX_PATH + 1, L'\0');
  DWORD n = ::GetFullPathNameW(path.c_str(), static_cast<DWORD>(absolute.size()), absolute.data(),
                               nullptr);
  if (n >= absolute.size()) {
    absolute.resize(n);
    n = ::GetFullPathNameW(path.c_str(), n, absolute.data(), nullptr);
  }
  if (n == 0 || n >= absolute.size()) return internal::LastError("free space", display);
  absolute.resize(n);
  const std::wstring long_form = internal::LongPathForm(absolute);
  // GetDiskFreeSpaceExW wants a directory (and takes the caller's quota into account there):
  // the path itself, or the folder holding a file.
  const DWORD attributes = ::GetFileAttributesW(long_form.c_str());
  if (attributes == INVALID_FILE_ATTRIBUTES) return internal::LastError("free space", display);
  std::wstring dir = long_form;
  if ((attributes & FILE_ATTRIBUTE_DIRECTORY) == 0) {
    dir = std::filesystem::path(long_form).parent_path().native();
  }
  if (dir.empty() || dir.back() != L'\\') dir += L'\\';  // UNC roots need the trailing '\'
  ULARGE_INTEGER available{}, total{};
  if (!::GetDiskFreeSpaceExW(dir.c_str(), &available, &total, nullptr)) {
    return internal::LastError("free space", display);
  }
  SpaceInfo info;
  info.total = total.QuadPart;
  info.available = available.QuadPart;
  // The longest component, in UTF-16 code units (255 on NTFS); 0 when the volume does not say.
  std::vector<wchar_t> root(absolute.size() + 2);
  DWORD max_component = 0;
  if (::GetVolumePathNameW(absolute.c_str(), root.data(), static_cast<DWORD>(root.size())) &&
      ::GetVolumeInformationW(root.data(), nullptr, 0, nullptr, &max_component, nullptr, nullptr,
                              0)) {
    info.max_name_length = max_component;
  }
  return info;
}

HostInfo GetHostInfo() {
  HostInfo info;
  info.hostname = internal::Narrow(ComputerName(ComputerNameDnsHostname));
  if (info.hostname.empty()) info.hostname = internal::Narrow(ComputerName(ComputerNameNetBIOS));
  info.os_name = "Windows";
  info.os_version = WindowsVersion();
  info.arch = Architecture();
  return info;
}

void SetCurrentThreadName(const std::string& name) {
  // Windows 10 1607 and later; missing on older systems (and some Wine versions): best effort.
  using SetThreadDescriptionFn = HRESULT(WINAPI*)(HANDLE, PCWSTR);
  static const auto set_description =
      SystemFunction<SetThreadDescriptionFn>(L"kernel32.dll", "SetThreadDescription");
  if (set_description != nullptr) {
    set_description(::GetCurrentThread(), internal::Widen(name).c_str());
  }
}

bool IsTerminal(StdStream stream) {
  DWORD mode = 0;
  return ::GetConsoleMode(StdHandle(stream), &mode) != 0;
}

struct HiddenInput::Saved {
  HANDLE input;
  DWORD mode;
};

HiddenInput::HiddenInput() {
  HANDLE input = StdHandle(StdStream::kIn);
  DWORD mode = 0;
  if (!::GetConsoleMode(input, &mode)) return;  // not a console: nothing echoes
  saved_ = std::make_unique<Saved>(Saved{input, mode});
  ::SetConsoleMode(input, mode & ~static_cast<DWORD>(ENABLE_ECHO_INPUT));
}

HiddenInput::~HiddenInput() {
  if (saved_ != nullptr) ::SetConsoleMode(saved_->input, saved_->mode);
}

void SetMallocMmapThreshold(size_t) {}  // the Windows heap maps large blocks by itself

void RaiseOpenFileLimit(uint64_t) {}  // no per-process handle limit to raise

// The MachineGuid Windows setup writes (HKLM\SOFTWARE\Microsoft\Cryptography), from the 64-bit
// registry view even in a 32-bit process. Readable by every user, so weak as a secret on its
// own: the agent state on Windows will be protected by DPAPI (CryptProtectData, machine scope)
// in a later step, with this only binding the file to the machine.
std::string MachineSecret() {
  HKEY key = nullptr;
  std::wstring guid;
  if (::RegOpenKeyExW(HKEY_LOCAL_MACHINE, L"SOFTWARE\\Microsoft\\Cryptography", 0,
                      KEY_QUERY_VALUE | KEY_WOW64_64KEY, &key) == ERROR_SUCCESS) {
    DWORD bytes = 0;
    if (::RegGetValueW(key, nullptr, L"MachineGuid", RRF_RT_REG_SZ, nullptr, nullptr, &bytes) ==
            ERROR_SUCCESS &&
        bytes > 0) {
      guid.resize(bytes / sizeof(wchar_t));
      if (::RegGetValueW(key, nullptr, L"MachineGuid", RRF_RT_REG_SZ, nullptr, guid.data(),
                         &bytes) == ERROR_SUCCESS) {
        guid.resize(bytes / sizeof(wchar_t));
        while (!guid.empty() && guid.back() == L'\0') guid.pop_back();
      } else {
        guid.clear();
      }
    }
    ::RegCloseKey(key);
  }
  if (!guid.empty()) return internal::Narrow(guid);
  return absl::StrCat("host:", GetHostInfo().hostname);
}

}  // namespace ds::platform
