// The shared store module's public surface: the contract, the factory, the config schemas.
export * from './shared-store.ts';
export { createSharedStore, PolicyStore, type CreateStoreOptions } from './create-store.ts';
export { MemoryBackend } from './memory-store.ts';
export { RedisBackend } from './redis-store.ts';
export * from './redis-config.ts';
