// Small DOM helpers. Text always goes in as text nodes, never as HTML: message content
// is whatever a model or a user wrote.

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found as T;
}

type Child = Node | string | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) {
    if (child) node.append(child);
  }
  return node;
}

/** Replaces the element's children. */
export function fill(parent: HTMLElement, ...children: Child[]): void {
  parent.replaceChildren(...children.filter((c): c is Node | string => Boolean(c)));
}

export function setText(id: string, text: string): void {
  byId(id).textContent = text;
}

const integer = new Intl.NumberFormat('en');

export function count(n: number): string {
  return integer.format(n);
}

export function usd(n: number): string {
  return `$${n.toFixed(6).replace(/0{1,4}$/, '')}`;
}
