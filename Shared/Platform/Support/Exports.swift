// The domain types (task record, document, kinds, lifecycle) and the transport protocols with
// their typed channels are the platform's vocabulary: every service that imports the platform
// sees them without naming those modules.
@_exported import SDQCore
@_exported import SDQTransport
