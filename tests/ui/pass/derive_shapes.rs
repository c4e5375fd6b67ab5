//! `#[derive(Wire)]` on every shape of struct and enum, generics included.
use remote_core::Wire;

#[derive(Wire)]
pub struct Unit;

#[derive(Wire)]
pub struct Tuple(pub u8, pub String);

#[derive(Wire)]
#[wire(secret)]
pub struct Token {
    #[wire(secret)]
    pub value: String,
    #[serde(skip)]
    pub cached: Option<std::time::Instant>,
}

#[derive(Wire)]
#[serde(tag = "type")]
pub enum Event {
    Joined { user: String },
    Left { user: String, reason: Option<String> },
}

#[derive(Wire)]
pub enum Mixed<T> {
    Nothing,
    One(T),
    Many([u8; 4], Vec<T>),
    Named { first: T, rest: Vec<T> },
}

// A bound written on the parameter (the guide's generic struct) or in a
// `where` clause: issue 12 friction 6 (was 9 E0283 errors).
#[derive(Wire)]
pub struct Page<T: Wire> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

#[derive(Wire)]
pub enum Either<A, B>
where
    A: Wire + Clone,
{
    Left(A),
    Right(B),
}

fn main() {
    fn wire<T: Wire>() {}
    wire::<Unit>();
    wire::<Tuple>();
    wire::<Event>();
    wire::<Mixed<String>>();
    wire::<Page<Event>>();
    wire::<Either<u8, Page<String>>>();
}
