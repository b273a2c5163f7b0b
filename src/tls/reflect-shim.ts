// The few `Reflect` metadata functions that tsyringe (a dependency of @peculiar/x509) checks for
// at load time. @peculiar/x509 only registers classes with it; it never injects by parameter
// type, so a plain WeakMap store is enough. Import this module before @peculiar/x509.
type MetaStore = WeakMap<object, Map<unknown, unknown>>;

const R = Reflect as unknown as {
  getMetadata?: (key: unknown, target: object) => unknown;
  getOwnMetadata?: (key: unknown, target: object) => unknown;
  defineMetadata?: (key: unknown, value: unknown, target: object) => void;
};

if (typeof R.getMetadata !== "function") {
  const store: MetaStore = new WeakMap();
  const own = (target: object, key: unknown) => store.get(target)?.get(key);
  R.defineMetadata = (key, value, target) => {
    let m = store.get(target);
    if (m === undefined) store.set(target, (m = new Map()));
    m.set(key, value);
  };
  R.getOwnMetadata = (key, target) => own(target, key);
  R.getMetadata = (key, target) => {
    for (let o: object | null = target; o !== null; o = Object.getPrototypeOf(o) as object | null) {
      const v = own(o, key);
      if (v !== undefined) return v;
    }
    return undefined;
  };
}

export {};
