@_exported import KeelModels
