@_exported import KeelRuntime
