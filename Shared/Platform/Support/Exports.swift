// The domain types (task record, document, kinds, lifecycle) are the platform's vocabulary: every
// service that imports the platform sees them without naming the core module.
@_exported import SDQCore
