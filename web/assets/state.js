/* Shared state: only what several modules read, in one plain object.
   Owns: the signed-in user, the login epoch (bumped at every login and logout, so an answer that
   arrives for a previous login is dropped) and the sessions by id, with three readers derived from them.
   Not: state that one module alone uses (each module keeps its own), nor the token (api.js). */

export const state = { user: null, epoch: 0, sessions: new Map() };

export const isAdmin = () => !!state.user && state.user.role === 'admin';

export const sessionName = (id) => (state.sessions.get(id) || {}).name || id || '?';

export function sortedSessions() {
  return [...state.sessions.values()].sort((a, b) => (a.name || '').localeCompare(b.name || '') || a.id.localeCompare(b.id));
}
